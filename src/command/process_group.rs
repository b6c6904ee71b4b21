//! A command worker's program runs as a process group of its own, so everything it starts
//! (a shell's background jobs, a script's children) ends with the job: at its timeout, when
//! the server stops, and, on Linux, when the server itself is killed (`kill -9`), which no
//! cleanup code of the server's can see.
//!
//! On Linux the server's direct child is a small watcher, forked before the program is
//! executed: it asks the kernel for a signal when the server dies
//! (`PR_SET_PDEATHSIG`), waits for the program, and passes its exit status on; if the server
//! dies first, it kills the whole group. It runs only async-signal-safe calls, as a child
//! forked from a multi-threaded process must. The kernel sends that signal when the
//! *thread* that spawned the program ends: jobs run on the runtime's worker threads,
//! which live as long as the server.

/// Makes `command` start its program as the leader of a new process group, watched on Linux.
pub(crate) fn isolate(command: &mut tokio::process::Command) {
    #[cfg(unix)]
    {
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe calls (setpgid, sigprocmask, fork, prctl, sigwaitinfo, waitpid,
        // kill, _exit); it allocates nothing.
        #[cfg(target_os = "linux")]
        let server = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                #[cfg(target_os = "linux")]
                watch(server)?;
                Ok(())
            });
        }
    }
}

/// Kills the process group led by `pid` (the program and all it started), if it is left.
pub(crate) fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    signal_group(pid, libc::SIGKILL);
    #[cfg(not(unix))]
    let _ = pid;
}

/// Asks the process group led by `pid` to stop (TERM), if it is left: a cancelled job's
/// program may clean up until its grace is over and it is killed. On Linux the leader is
/// the watcher, which passes TERM on to the group once.
pub(crate) fn term_group(pid: Option<u32>) {
    #[cfg(target_os = "linux")]
    if let Some(pid) = pid {
        // SAFETY: a plain syscall; a process already gone answers ESRCH.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    signal_group(pid, libc::SIGTERM);
    #[cfg(not(unix))]
    let _ = pid;
}

#[cfg(unix)]
fn signal_group(pid: Option<u32>, signal: libc::c_int) {
    if let Some(pid) = pid {
        // SAFETY: a plain syscall; a group already gone answers ESRCH.
        unsafe {
            libc::killpg(pid as libc::pid_t, signal);
        }
    }
}

/// Splits the child in two: the program (returns, to be executed) and its watcher (never
/// returns). See the module docs.
#[cfg(target_os = "linux")]
unsafe fn watch(server: libc::pid_t) -> std::io::Result<()> {
    unsafe {
        let mut watched: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut watched);
        libc::sigaddset(&mut watched, libc::SIGCHLD);
        libc::sigaddset(&mut watched, libc::SIGUSR1);
        libc::sigaddset(&mut watched, libc::SIGTERM);
        let mut before: libc::sigset_t = std::mem::zeroed();
        // A server started with SIGCHLD ignored would have the kernel reap the program
        // unseen (and a program inherits an ignored signal across exec): default it.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // Blocked before the fork, so no signal can come between and be lost.
        libc::sigprocmask(libc::SIG_BLOCK, &watched, &mut before);
        let program = libc::fork();
        if program < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if program == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            return Ok(());
        }
        // The watcher needs no file: it lets go of every one, above all the pipe on which
        // the server's spawn waits for the program's exec (and of the program's stdin and
        // stderr, whose ends are the program's business).
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            // Kernels before 5.9: every descriptor the limit allows.
            let mut limit: libc::rlimit = std::mem::zeroed();
            let most = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as libc::c_int
            } else {
                65_536
            };
            for fd in 0..most {
                libc::close(fd);
            }
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1);
        if libc::getppid() != server {
            // The server died before the request took hold.
            libc::kill(0, libc::SIGKILL);
        }
        let mut termed = false;
        loop {
            let signal = libc::sigwaitinfo(&watched, std::ptr::null_mut());
            if signal == libc::SIGUSR1 {
                // The server is gone: the whole group goes, this watcher too.
                libc::kill(0, libc::SIGKILL);
            }
            if signal == libc::SIGTERM && !termed {
                // A cancelled job: the whole group is asked to stop (this watcher too, which
                // sees it as the next TERM and lets it pass); the server kills the group
                // when the grace is over.
                termed = true;
                libc::kill(0, libc::SIGTERM);
            }
            let mut status = 0;
            if libc::waitpid(program, &mut status, libc::WNOHANG) == program {
                if libc::WIFEXITED(status) {
                    libc::_exit(libc::WEXITSTATUS(status));
                }
                libc::_exit(128 + libc::WTERMSIG(status));
            }
        }
    }
}
