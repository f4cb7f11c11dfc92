//! Error and warning output: always to stderr, and with `--log FILE` also appended to that
//! file, as text (`time="…" level=error msg="…"`, logrus style like runc) or JSON lines
//! (`{"level":"error","msg":"…","time":"…"}`, which conmon and containerd-shim parse).

use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug)]
pub struct Logger {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

impl Logger {
    pub fn new(file: Option<PathBuf>, format: Format, debug: bool) -> Self {
        Self {
            file,
            format,
            debug,
        }
    }

    /// An error: stderr and the log file.
    pub fn error(&self, msg: &str) {
        eprintln!("tinyo: {msg}");
        self.write("error", msg);
    }

    /// A warning (a config setting accepted but not applied): stderr and the log file.
    pub fn warn(&self, msg: &str) {
        eprintln!("tinyo: warning: {msg}");
        self.write("warning", msg);
    }

    /// A debug note: only with `--debug`.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            eprintln!("tinyo: debug: {msg}");
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let time = tinyo_core::container::now_rfc3339();
        let line = match self.format {
            Format::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            Format::Text => format!(
                "time={} level={level} msg={}",
                serde_json::Value::from(time),
                serde_json::Value::from(msg)
            ),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_level_msg_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let l = Logger::new(Some(path.clone()), Format::Json, false);
        l.error("container \"x\" does not exist");
        l.debug("not written without --debug");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
