//! The `psychiq` binary's log lines, in tracing-subscriber's own formats, made cheap for
//! the two lines every job logs.
//!
//! Psychiq's `start` and `done` lines ([`JobLines`]) are written here straight into the
//! log stream: the same words tracing-subscriber's text or JSON format gives them, without
//! its per-event machinery. In text, the running job's fields prefix every line logged
//! inside it (`job{class=… jid=… queue=… retry_count=…}:`, as the `job` span printed them),
//! read from the job's context, so no span is made per job. Timestamps keep their format;
//! the date and time of day are formatted once a second per thread.

use std::cell::RefCell;
use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::log_stream;
use crate::job::text;
use crate::server::job_log::{self, JobLine, JobLines, TARGET};

/// Writes the current time as tracing-subscriber does: `2026-12-07T18:29:04.123456Z`.
fn timestamp(out: &mut impl fmt::Write) -> fmt::Result {
    thread_local! {
        /// The last second formatted here, and its text up to the fraction.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != now.as_secs() {
            let whole = crate::clock::utc_iso8601(now.as_secs() as f64);
            cached.1 = format!("{}.", whole.trim_end_matches('Z'));
            cached.0 = now.as_secs();
        }
        out.write_str(&cached.1)
    })?;
    digits(out, u64::from(now.subsec_micros()), 6)?;
    out.write_char('Z')
}

/// Writes `value` in decimal, zero-padded to `width` (per-job lines: no `core::fmt`).
fn digits(out: &mut impl fmt::Write, mut value: u64, width: usize) -> fmt::Result {
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    while value > 0 || buf.len() - at < width.max(1) {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.write_str(std::str::from_utf8(&buf[at..]).unwrap_or("?"))
}

/// Microseconds as milliseconds, written as `f64`'s `Debug` writes `us / 1000.0`
/// (`0.037`, `1.0`, `12.5`).
fn millis(out: &mut impl fmt::Write, us: u64) -> fmt::Result {
    digits(out, us / 1000, 1)?;
    out.write_char('.')?;
    match us % 1000 {
        0 => out.write_char('0'),
        frac => {
            let (mut frac, mut width) = (frac, 3);
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            digits(out, frac, width)
        }
    }
}

/// The level as tracing-subscriber's text pads it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Plain text (no colours): tracing-subscriber's full format, with the running job's
/// fields where its `job` span was.
pub(crate) struct TextFormat {
    /// Spans, target and fields, as tracing-subscriber writes them.
    rest: Format<Full, ()>,
    /// Add the job's fields even where a `job` span is made (tests: no lines writer).
    always_add_job: bool,
}

impl TextFormat {
    pub(crate) fn new() -> TextFormat {
        TextFormat {
            rest: tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false)
                .with_ansi(false),
            always_add_job: false,
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        timestamp(&mut writer)?;
        write!(writer, " {} ", level(event.metadata().level()))?;
        // Only where no `job` span was made (Psychiq's own lines writer is installed).
        if let Some(job) =
            crate::context::current().filter(|_| self.always_add_job || !job_log::span_needed())
        {
            write!(
                writer,
                "job{{class={} jid={} queue={}",
                text::printable(job.class()),
                text::printable(job.jid()),
                text::printable(job.queue())
            )?;
            if let Some(count) = job.retry_count() {
                write!(writer, " retry_count={count}")?;
            }
            // As tracing-subscriber joins spans: `job{..}:step{..}: target: ...`.
            writer.write_str(if ctx.event_scope().is_some() {
                "}:"
            } else {
                "}: "
            })?;
        }
        self.rest.format_event(ctx, writer, event)
    }
}

/// Psychiq's per-job lines, formatted here and added to the log stream.
pub(crate) struct FastJobLines {
    /// JSON lines (tracing-subscriber's flattened JSON) instead of text.
    pub json: bool,
}

impl JobLines for FastJobLines {
    fn write(&self, line: JobLine<'_>) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            let written = if self.json {
                json_line(&mut buf, &line)
            } else {
                text_line(&mut buf, &line)
            };
            if written.is_ok() {
                log_stream::append(buf.as_bytes());
            }
        });
    }

    /// In text the [`TextFormat`] adds them; JSON lines take them from the span.
    fn adds_job_fields(&self) -> bool {
        !self.json
    }
}

fn text_line(out: &mut String, line: &JobLine<'_>) -> fmt::Result {
    timestamp(out)?;
    out.push_str("  INFO ");
    out.push_str(TARGET);
    out.push_str(": ");
    out.push_str(line.message);
    for (name, value) in [
        (" class=", line.class),
        (" jid=", line.jid),
        (" queue=", line.queue),
    ] {
        out.push_str(name);
        out.push_str(&text::printable(value));
    }
    if let Some(us) = line.elapsed_us {
        out.push_str(" elapsed_ms=");
        millis(out, us)?;
    }
    out.push('\n');
    Ok(())
}

fn json_line(out: &mut String, line: &JobLine<'_>) -> fmt::Result {
    out.push_str("{\"timestamp\":\"");
    timestamp(out)?;
    out.push_str("\",\"level\":\"INFO\",\"message\":\"");
    out.push_str(line.message);
    out.push('"');
    for (name, value) in [
        (",\"class\":", line.class),
        (",\"jid\":", line.jid),
        (",\"queue\":", line.queue),
    ] {
        out.push_str(name);
        out.push_str(&json_string(&text::printable(value)));
    }
    if let Some(us) = line.elapsed_us {
        out.push_str(",\"elapsed_ms\":");
        millis(out, us)?;
    }
    out.push_str(",\"target\":\"");
    out.push_str(TARGET);
    out.push_str("\"}\n");
    Ok(())
}

/// `text` as a JSON string, quoted and escaped.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use futures_util::FutureExt;

    use super::*;
    use crate::job::context::{self, JobContext};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// A `MakeWriter` that appends to this capture.
        fn writer(&self) -> impl Fn() -> Capture + use<> {
            let capture = self.clone();
            move || capture.clone()
        }
    }

    /// Psychiq's `done` line as a `tracing` event, as it was logged before `JobLines`.
    fn log_as_tracing(line: &JobLine<'_>) {
        tracing::info!(
            target: TARGET,
            parent: None,
            class = %text::printable(line.class),
            jid = %text::printable(line.jid),
            queue = %text::printable(line.queue),
            elapsed_ms = line.elapsed_us.map(|us| us as f64 / 1000.0),
            "{}",
            line.message
        );
    }

    /// What tracing-subscriber's own text format wrote, without the timestamp.
    fn after_time(line: &str) -> &str {
        assert_eq!(&line[26..28], "Z ", "{line}");
        &line[27..]
    }

    fn done_line() -> JobLine<'static> {
        JobLine {
            message: "done",
            class: "Noop",
            jid: "0123abcd",
            queue: "default",
            elapsed_us: Some(250),
        }
    }

    #[test]
    fn the_fast_text_line_is_the_one_tracing_wrote() {
        let theirs = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(theirs.writer())
            .finish();
        let lines: Vec<JobLine<'_>> = [0, 37, 250, 1_000, 12_500, 1_234_567]
            .into_iter()
            .map(|us| JobLine {
                elapsed_us: Some(us),
                ..done_line()
            })
            .chain([
                JobLine {
                    class: "Evil\u{1b}[31m\nClass",
                    ..done_line()
                },
                JobLine {
                    message: "start",
                    elapsed_us: None,
                    ..done_line()
                },
            ])
            .collect();
        tracing::subscriber::with_default(subscriber, || lines.iter().for_each(log_as_tracing));
        let mut ours = String::new();
        for line in &lines {
            text_line(&mut ours, line).unwrap();
        }
        let theirs = theirs.text();
        assert_eq!(ours.lines().count(), lines.len());
        for (ours, theirs) in ours.lines().zip(theirs.lines()) {
            assert_eq!(after_time(ours), after_time(theirs));
        }
        // The timestamp is tracing-subscriber's shape, now.
        let now = crate::clock::utc_iso8601(crate::clock::now_secs());
        assert_eq!(&ours[..17], &now[..17], "{ours}");
    }

    #[test]
    fn the_fast_json_line_holds_what_tracing_wrote() {
        let theirs = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(theirs.writer())
            .finish();
        let line = JobLine {
            class: "Quote\"d",
            ..done_line()
        };
        tracing::subscriber::with_default(subscriber, || log_as_tracing(&line));
        let mut ours = String::new();
        json_line(&mut ours, &line).unwrap();
        let parse = |text: &str| {
            let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
            let time = value["timestamp"].take();
            assert!(time.as_str().is_some_and(|t| t.ends_with('Z')), "{text}");
            value
        };
        assert_eq!(parse(&ours), parse(&theirs.text()));
        assert!(ours.ends_with("}\n"));
    }

    /// A worker's own line inside a job: the job's fields where the `job` span put them.
    #[test]
    fn a_line_inside_a_job_names_the_job_as_its_span_did() {
        let payload =
            r#"{"class":"Noop","jid":"0123abcd","queue":"default","args":[1],"retry_count":2}"#;
        let raw: Arc<[u8]> = Arc::from(payload.as_bytes());
        let args = &payload[payload.find("[1]").unwrap()..][..3];
        let job = Arc::new(JobContext::new(
            Arc::clone(&raw),
            Arc::from("default"),
            "Noop",
            "0123abcd",
            args,
        ));

        let theirs = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(theirs.writer())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "job",
                class = %"Noop",
                jid = %"0123abcd",
                queue = %"default",
                retry_count = Some(2i64),
            );
            let _entered = span.enter();
            tracing::info!(target: "my_app", user = 42, "charged the card");
            let _step = tracing::info_span!("step", n = 1).entered();
            tracing::info!(target: "my_app", "inside a span of its own");
        });

        let ours = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(TextFormat {
                always_add_job: true,
                ..TextFormat::new()
            })
            .with_writer(ours.writer())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            context::scope(job, async {
                tracing::info!(target: "my_app", user = 42, "charged the card");
                let _step = tracing::info_span!("step", n = 1).entered();
                tracing::info!(target: "my_app", "inside a span of its own");
            })
            .now_or_never()
            .unwrap();
            // Outside a job: no prefix.
            tracing::info!(target: "my_app", "idle");
        });
        let (ours, theirs) = (ours.text(), theirs.text());
        let mut lines = ours.lines();
        assert_eq!(theirs.lines().count(), 2);
        for theirs in theirs.lines() {
            assert_eq!(after_time(lines.next().unwrap()), after_time(theirs));
        }
        assert_eq!(after_time(lines.next().unwrap()), "  INFO my_app: idle");
    }
}
