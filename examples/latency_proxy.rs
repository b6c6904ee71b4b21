//! A TCP proxy on loopback that delays every byte by a fixed time in each direction, to
//! measure job systems behind a network such as Sidekiq's published setup (1 ms round trip
//! to Redis). This kernel has no `netem` qdisc, so `tc` cannot add the delay.
//!
//! ```sh
//! cargo run --release --example latency_proxy -- 127.0.0.1:6400 127.0.0.1:6399 500
//! redis-cli -p 6400 --latency        # about 1 ms more than straight to 6399
//! ```
//!
//! Arguments: where to listen, where Redis is, the delay each way in microseconds.
//!
//! Delay, not bandwidth: what is read is stamped and written out once its time has come,
//! so a pipeline of many commands pays the delay once, as on a real network. Plain threads,
//! not tokio: a thread's sleep is precise to tens of microseconds where tokio's timer
//! rounds up to whole milliseconds, which would double a 0.5 ms delay.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, delay_us] = args.as_slice() else {
        eprintln!("usage: latency_proxy LISTEN_ADDR UPSTREAM_ADDR DELAY_MICROSECONDS_EACH_WAY");
        std::process::exit(2);
    };
    let delay = match delay_us.parse() {
        Ok(us) => Duration::from_micros(us),
        Err(_) => {
            eprintln!(
                "error: the delay is whole microseconds each way, e.g. 500, not {delay_us:?}"
            );
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("error: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    // Sleeps end up to 50 µs late by default (the timer slack); ask for 1 ns. Threads
    // started from here inherit it.
    // SAFETY: prctl with PR_SET_TIMERSLACK reads no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
    }
    eprintln!("latency_proxy: {listen} -> {upstream}, +{delay:?} each way");
    for client in listener.incoming().flatten() {
        let server = match TcpStream::connect(upstream) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("latency_proxy: cannot reach {upstream}: {e}");
                continue;
            }
        };
        for stream in [&client, &server] {
            let _ = stream.set_nodelay(true);
        }
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        relay(client, s2, delay);
        relay(server, c2, delay);
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
fn relay(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if chunks
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    thread::spawn(move || {
        for (at, bytes) in due {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
