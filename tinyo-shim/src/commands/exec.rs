//! `tinyo-shim exec [-t] [-i] [-e K=V] [-w DIR] [-u USER] ID CMD...`: another process in a
//! running container, with the container's namespaces, cgroups, root, capabilities and
//! seccomp filter. Its exit code becomes ours.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use tinyo_core::container::{wait_exit_code, ExecOptions};

use crate::state::{self, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Give the process a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Pass stdin to the process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Set an environment variable (K=V).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name, uid, name:group or uid:gid).
    #[arg(short, long)]
    pub user: Option<String>,
    /// The container (name, id or id prefix).
    pub id: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(roots: &Roots, a: Args) -> Result<i32> {
    let r = state::find(roots, &a.id)?;
    if r.live_status().0 != Status::Running {
        bail!("container {} is not running", r.name);
    }
    let dir = roots.container(&r.id);
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("config.json")).context("reading the container's config")?,
    )?;
    let mut p = spec["process"].clone();
    p["args"] = serde_json::json!(a.command);
    p["terminal"] = serde_json::json!(a.tty);
    if a.tty {
        if let Ok((rows, cols)) = crate::term::window_size(io::stdin().as_fd()) {
            p["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
        }
    } else if let Some(o) = p.as_object_mut() {
        o.remove("consoleSize");
    }
    if let Some(env) = p["env"].as_array_mut() {
        for kv in &a.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            env.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|(k, _)| k) != Some(key));
            env.push(serde_json::json!(kv));
        }
    }
    if let Some(w) = &a.workdir {
        p["cwd"] = serde_json::json!(w);
    }
    if let Some(u) = &a.user {
        let pid = r.pid.map(|p| p.pid).unwrap_or(0);
        let root = tinyo_core::sys::open_dir(std::path::Path::new(&format!("/proc/{pid}/root")))
            .context("opening the container's root")?;
        let (uid, gid, groups) = tinyo_pull::bundle::resolve_user(u, root.as_fd());
        p["user"] = serde_json::json!({"uid": uid, "gid": gid, "additionalGids": groups});
    }
    let process: oci_spec::runtime::Process =
        serde_json::from_value(p).context("building the process")?;
    let rt = roots.runtime();
    if !a.tty {
        if !a.interactive {
            let null = std::fs::File::open("/dev/null")?;
            tinyo_core::sys::dup2(null.as_fd(), 0)?;
        }
        let pid = rt.exec(&r.id, process, &ExecOptions::default())?;
        let _ = tinyo_core::container::forward_signals(pid);
        return Ok(wait_exit_code(pid)?);
    }
    // A terminal: the pty master comes back over a socket; this process relays it.
    let sock = dir.join(format!("exec-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock)
        .with_context(|| format!("listening on {}", sock.display()))?;
    let opts = ExecOptions {
        console_socket: Some(sock.clone()),
        ..Default::default()
    };
    let started = rt.exec(&r.id, process, &opts);
    let _ = std::fs::remove_file(&sock);
    let pid = started?;
    let (conn, _) = listener.accept().context("accepting the pty master")?;
    let master = tinyo_core::sys::recv_fd(conn.as_fd()).context("receiving the pty master")?;
    let raw = if crate::term::is_tty(io::stdin().as_fd()) {
        crate::term::RawMode::enter(io::stdin().as_fd()).ok()
    } else {
        None
    };
    relay(&master, a.interactive);
    drop(raw);
    Ok(wait_exit_code(pid)?)
}

/// Copies stdin → master (with `interactive`) and master → stdout until the master closes.
fn relay(master: &OwnedFd, interactive: bool) {
    use crate::term::{copy_available, Copied};
    let mut buf = [0u8; 8192];
    let mut stdin_open = interactive;
    let (stdin, stdout) = (io::stdin(), io::stdout());
    loop {
        let mut fds = vec![libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid pollfd array of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        if fds[0].revents != 0
            && !matches!(
                copy_available(master.as_fd(), stdout.as_fd(), &mut buf),
                Ok(Copied::Bytes(_) | Copied::WouldBlock)
            )
        {
            return;
        }
        if stdin_open
            && fds[1].revents != 0
            && !matches!(
                copy_available(stdin.as_fd(), master.as_fd(), &mut buf),
                Ok(Copied::Bytes(_) | Copied::WouldBlock)
            )
        {
            stdin_open = false;
        }
    }
}
