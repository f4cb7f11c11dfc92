//! The shim: containerd's `start` and `delete` actions, and the ttrpc Task service over
//! tinyo-core.
//!
//! State lives in memory (containers, their exec processes, exit statuses) and in tinyo-core's
//! state directory `/run/containerd/tinyo/<namespace>`. Exit statuses come from the shim's own
//! reaper (the shim is a child subreaper, so every container process ends up its child). If the
//! shim is killed, containerd runs `containerd-shim-tinyo-v2 delete`, which force-deletes the
//! container (killing what is left, removing its cgroups and state) and unmounts its rootfs.
//! The status it reports is the container's own if the container had ended (the shim saves
//! each container's exit status in its bundle), else 137, as runc's shim always reports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use containerd_shim::api;
use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::events::{Envelope, ForwardRequest};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{
    Config, DeleteResponse, ExitSignal, Flags, StartOpts, TtrpcContext, TtrpcResult,
};

use tinyo_core::container::Status;

use crate::stdio::{self, Io, Paths};
use crate::{events, helper, metrics};

/// Where tinyo-core keeps the state of this namespace's containers.
fn state_root(namespace: &str) -> PathBuf {
    Path::new("/run/containerd/tinyo").join(namespace)
}

/// The CRI's annotations that group a pod's containers into one shim.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The shim process: serves the Task API until containerd shuts it down.
pub struct Shim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    bundle: PathBuf,
    /// containerd's address (the shim's socket name derives from it).
    address: String,
    /// The ttrpc socket this process serves (the listener containerd-shim hands over as fd 3).
    socket: Option<PathBuf>,
}

/// The path of the unix socket bound to `fd`, if any.
fn socket_path(fd: i32) -> Option<PathBuf> {
    // SAFETY: an all-zero sockaddr_un is valid for the kernel to fill in.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` and `len` describe a writable sockaddr_un buffer.
    let r =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
    if r != 0 || addr.sun_family != libc::AF_UNIX as libc::sa_family_t || addr.sun_path[0] == 0 {
        return None;
    }
    let bytes: Vec<u8> = addr
        .sun_path
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    let name: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(bytes);
    Some(PathBuf::from(name))
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim").field("id", &self.id).finish()
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// Where a container's exit status is kept for `delete` after its shim died: in the bundle,
/// which containerd removes once the task is deleted.
const EXIT_FILE: &str = "tinyo-exit-status";

/// Saves the status of a container's init ("STATUS SECONDS NANOS"), written whole or not at all.
fn save_exit(bundle: &Path, status: u32, at: &Timestamp) {
    let tmp = bundle.join(format!(".{EXIT_FILE}"));
    let text = format!("{status} {} {}\n", at.seconds, at.nanos);
    let r = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, bundle.join(EXIT_FILE)));
    if let Err(e) = r {
        log::warn!("saving the exit status in {}: {e}", bundle.display());
    }
}

fn load_exit(bundle: &Path) -> Option<(u32, Timestamp)> {
    let text = std::fs::read_to_string(bundle.join(EXIT_FILE)).ok()?;
    let mut f = text.split_whitespace().map(str::parse::<i64>);
    let (Some(Ok(status)), Some(Ok(seconds)), Some(Ok(nanos))) = (f.next(), f.next(), f.next())
    else {
        return None;
    };
    Some((
        u32::try_from(status).ok()?,
        Timestamp {
            seconds,
            nanos: i32::try_from(nanos).ok()?,
            ..Default::default()
        },
    ))
}

/// Unmounts the rootfs containerd's snapshotter gave us (what `Create` mounted).
fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Ok(c) = std::ffi::CString::new(rootfs.as_os_str().as_encoded_bytes()) {
        // SAFETY: `c` is a NUL-terminated path. Repeat while something is still mounted there.
        while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
    }
}

impl Shim {
    /// One shim per pod: a CRI container goes to its sandbox's shim; anything else to its own.
    fn grouping(&self) -> String {
        let spec = std::fs::read(self.bundle.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok());
        spec.as_ref()
            .and_then(|s| s["annotations"][SANDBOX_ID].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.id.clone())
    }
}

impl containerd_shim::Shim for Shim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        // Serving (no action): containerd-shim passed our listening socket as fd 3.
        let socket = args.action.is_empty().then(|| socket_path(3)).flatten();
        Shim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            address: args.address.clone(),
            socket,
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        let grouping = self.grouping();
        let (_, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        // The shim died: what containerd asks here is to leave nothing behind.
        let rt = tinyo_core::container::Runtime::new(state_root(&self.namespace));
        let id = self.id.clone();
        let r = helper::run([None, None, None], move || {
            rt.delete(&id, true).map(drop).map_err(|e| e.to_string())
        });
        if let Err(e) = r {
            log::warn!("delete of {}: {e}", self.id);
        }
        unmount_rootfs(&self.bundle);
        // The dead shim's socket (a killed shim cannot remove it itself).
        let grouping = self.grouping();
        let address = containerd_shim::socket_address(&self.address, &self.namespace, &grouping);
        if let Some(path) = address.strip_prefix("unix://") {
            if std::os::unix::net::UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }
        // If the container ended before its shim did, its status was saved: report that one.
        // Otherwise it was killed just now.
        let (exit_status, exited_at) =
            load_exit(&self.bundle).unwrap_or((128 + libc::SIGKILL as u32, now()));
        Ok(DeleteResponse {
            exit_status,
            exited_at: Some(exited_at).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
        // containerd may already have removed the bundle (where containerd-shim looks for the
        // address to clean up): remove the socket ourselves.
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        drop(publisher);
        let inner = Arc::new(Inner {
            namespace: self.namespace.clone(),
            runtime: tinyo_core::container::Runtime::new(state_root(&self.namespace)),
            // Our own thread-free client (see `events`); the one containerd-shim made goes.
            publisher: events::Publisher::new(std::env::var("TTRPC_ADDRESS").unwrap_or_default()),
            tasks: Mutex::new(Tasks::default()),
            exited: Condvar::new(),
            exit: self.exit.clone(),
        });
        let watcher = inner.clone();
        std::thread::spawn(move || watcher.watch_exits());
        Service { inner }
    }
}

/// One process: a container's init or an exec.
#[derive(Debug, Default)]
struct Proc {
    pid: i32,
    paths: Paths,
    io: Io,
    /// The exec's process spec until it is started.
    spec: Option<oci_spec::runtime::Process>,
    exit: Option<(u32, Timestamp)>,
}

#[derive(Debug)]
struct Container {
    bundle: PathBuf,
    mounted: bool,
    init: Proc,
    execs: HashMap<String, Proc>,
}

#[derive(Debug, Default)]
struct Tasks {
    containers: HashMap<String, Container>,
    /// Exits of pids not known yet (an exec that ended before its pid was recorded).
    early: HashMap<i32, i32>,
}

struct Inner {
    namespace: String,
    runtime: tinyo_core::container::Runtime,
    publisher: events::Publisher,
    tasks: Mutex<Tasks>,
    exited: Condvar,
    exit: Arc<ExitSignal>,
}

/// The ttrpc Task service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("namespace", &self.inner.namespace)
            .finish()
    }
}

fn err(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn not_found(what: &str) -> ttrpc::Error {
    err(ttrpc::Code::NOT_FOUND, format!("{what}: not found"))
}

/// tinyo-core's error in the code containerd maps to its errdefs.
fn core_err(e: tinyo_core::container::Error) -> ttrpc::Error {
    use tinyo_core::container::Error as E;
    let code = match &e {
        E::NotFound(_) => ttrpc::Code::NOT_FOUND,
        E::NotRunning(_) => ttrpc::Code::NOT_FOUND,
        E::StillRunning { .. } => ttrpc::Code::FAILED_PRECONDITION,
        _ => ttrpc::Code::UNKNOWN,
    };
    err(code, e.to_string())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `event` to containerd on `topic`.
    ///
    /// The envelope is built here rather than by containerd-shim's publisher: that names the
    /// event through protobuf reflection, which builds the descriptors of every proto file the
    /// event's file imports (source comments included) and keeps them for the life of the
    /// process: ~0.5 MiB of heap in every idle shim. All our events live in containerd's
    /// `containerd.events` package, so the type URL follows from the message's name.
    fn publish<M: Message>(&self, topic: &str, event: M) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                log::warn!("encoding the {topic} event: {e}");
                return;
            }
        };
        let req = ForwardRequest {
            envelope: Some(Envelope {
                timestamp: Some(now()).into(),
                namespace: self.namespace.clone(),
                topic: topic.to_string(),
                event: Some(Any {
                    type_url: format!("containerd.events.{}", M::NAME),
                    value,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        if let Err(e) = self.publisher.forward(&req) {
            log::warn!("publishing {topic}: {e}");
        }
    }

    /// Records exits from the shim's reaper and tells containerd.
    fn watch_exits(self: Arc<Self>) {
        let Ok(sub) = monitor_subscribe(Topic::Pid) else {
            log::error!("cannot watch process exits");
            return;
        };
        while let Ok(ev) = sub.rx.recv() {
            let Subject::Pid(pid) = ev.subject else {
                continue;
            };
            self.record_exit(pid, ev.exit_code);
        }
    }

    fn record_exit(&self, pid: i32, code: i32) {
        let mut t = self.lock();
        let mut event = None;
        for (cid, c) in t.containers.iter_mut() {
            let procs = std::iter::once((cid.clone(), &mut c.init))
                .chain(c.execs.iter_mut().map(|(eid, p)| (eid.clone(), p)));
            for (eid, p) in procs {
                if p.pid == pid && p.exit.is_none() {
                    let at = now();
                    p.exit = Some((code as u32, at.clone()));
                    if eid == *cid {
                        save_exit(&c.bundle, code as u32, &at);
                    }
                    event = Some(TaskExit {
                        container_id: cid.clone(),
                        id: eid,
                        pid: pid as u32,
                        exit_status: code as u32,
                        exited_at: Some(at).into(),
                        ..Default::default()
                    });
                    break;
                }
            }
            if event.is_some() {
                break;
            }
        }
        match event {
            Some(e) => {
                drop(t);
                self.exited.notify_all();
                self.publish(topics::TASK_EXIT_EVENT_TOPIC, e);
            }
            None => {
                if t.early.len() > 4096 {
                    t.early.clear();
                }
                t.early.insert(pid, code);
            }
        }
    }

    /// The process `exec_id` (empty: the init) of container `id`.
    fn with_proc<R>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&mut Container, Option<&str>) -> TtrpcResult<R>,
    ) -> TtrpcResult<R> {
        let mut t = self.lock();
        let c = t.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        if !exec_id.is_empty() && !c.execs.contains_key(exec_id) {
            return Err(not_found(&format!("exec {exec_id} of {id}")));
        }
        f(c, (!exec_id.is_empty()).then_some(exec_id))
    }
}

fn proc_of<'a>(c: &'a mut Container, exec: Option<&str>) -> &'a mut Proc {
    match exec {
        Some(e) => c.execs.get_mut(e).unwrap_or(&mut c.init),
        None => &mut c.init,
    }
}

fn mount_rootfs(req: &api::CreateTaskRequest) -> TtrpcResult<bool> {
    let target = Path::new(&req.bundle).join("rootfs");
    let mut mounted = false;
    for m in &req.rootfs {
        if m.type_.is_empty() && m.source.is_empty() {
            continue;
        }
        if !target.exists() {
            std::fs::create_dir_all(&target)
                .map_err(|e| err(ttrpc::Code::INTERNAL, format!("{}: {e}", target.display())))?;
        }
        containerd_shim::mount::mount_rootfs(
            (!m.type_.is_empty()).then_some(m.type_.as_str()),
            (!m.source.is_empty()).then_some(m.source.as_str()),
            &m.options,
            &target,
        )
        .map_err(|e| {
            err(
                ttrpc::Code::INTERNAL,
                format!(
                    "mounting the rootfs ({} {}) on {}: {e}",
                    m.type_,
                    m.source,
                    target.display()
                ),
            )
        })?;
        mounted = true;
    }
    Ok(mounted)
}

impl containerd_shim::Task for Service {
    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let t = self.inner.lock();
        let task_pid = t.containers.get(&req.id).map_or(0, |c| c.init.pid) as u32;
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(err(
                ttrpc::Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported by tinyo",
            ));
        }
        if self.inner.lock().containers.contains_key(&req.id) {
            return Err(err(
                ttrpc::Code::ALREADY_EXISTS,
                format!("{}: already exists", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let mounted = mount_rootfs(&req)?;
        let paths = Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let fail = |e: ttrpc::Error| {
            if mounted {
                unmount_rootfs(&bundle);
            }
            e
        };
        let prepared = stdio::prepare(&paths).map_err(|e| {
            fail(err(
                ttrpc::Code::INTERNAL,
                format!("stdio of {}: {e}", req.id),
            ))
        })?;
        let opts = tinyo_core::container::CreateOptions {
            console_socket: prepared.console_socket.clone(),
            ..Default::default()
        };
        let (rt, id, b) = (self.inner.runtime.clone(), req.id.clone(), bundle.clone());
        let pid = helper::run(prepared.raw(), move || {
            rt.create(&id, &b, &opts)
                .map(|c| c.pid)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| fail(err(ttrpc::Code::UNKNOWN, e)))?;
        let io = prepared.io;
        drop(prepared.fds);
        let mut t = self.inner.lock();
        let early = t.early.remove(&pid);
        t.containers.insert(
            req.id.clone(),
            Container {
                bundle,
                mounted,
                init: Proc {
                    pid,
                    paths,
                    io,
                    spec: None,
                    exit: early.map(|c| (c as u32, now())),
                },
                execs: HashMap::new(),
            },
        );
        drop(t);
        self.inner.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        // TaskOOM: a thread per container blocks on its memory cgroup's OOM notification and
        // ends when the cgroup goes away (or there is no memory cgroup to watch).
        if let Ok(mut watcher) = self.inner.runtime.oom_watcher(&req.id) {
            let (inner, id) = (self.inner.clone(), req.id.clone());
            std::thread::spawn(move || {
                while let Ok(true) = watcher.wait(None) {
                    if !inner.lock().containers.contains_key(&id) {
                        break;
                    }
                    inner.publish(
                        topics::TASK_OOM_EVENT_TOPIC,
                        TaskOOM {
                            container_id: id.clone(),
                            ..Default::default()
                        },
                    );
                }
            });
        }
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        if req.exec_id.is_empty() {
            self.inner.with_proc(&req.id, "", |_, _| Ok(()))?;
            let (rt, id) = (self.inner.runtime.clone(), req.id.clone());
            // startContainer and poststart hooks run in the helper, whose children they are.
            helper::run([None, None, None], move || {
                rt.start(&id).map(drop).map_err(|e| e.to_string())
            })
            .map_err(|e| err(ttrpc::Code::UNKNOWN, e))?;
            let pid = self.inner.with_proc(&req.id, "", |c, _| Ok(c.init.pid))?;
            self.inner.publish(
                topics::TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                },
            );
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        // An exec: its process starts now.
        let (spec, paths) = self.inner.with_proc(&req.id, &req.exec_id, |c, e| {
            let p = proc_of(c, e);
            if p.pid != 0 {
                return Err(err(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!("exec {} already started", req.exec_id),
                ));
            }
            Ok((p.spec.clone(), p.paths.clone()))
        })?;
        let spec = spec.ok_or_else(|| not_found(&req.exec_id))?;
        let prepared = stdio::prepare(&paths).map_err(|e| {
            err(
                ttrpc::Code::INTERNAL,
                format!("stdio of exec {}: {e}", req.exec_id),
            )
        })?;
        let opts = tinyo_core::container::ExecOptions {
            console_socket: prepared.console_socket.clone(),
            ..Default::default()
        };
        let (rt, id) = (self.inner.runtime.clone(), req.id.clone());
        let pid = helper::run(prepared.raw(), move || {
            rt.exec(&id, spec, &opts).map_err(|e| e.to_string())
        })
        .map_err(|e| err(ttrpc::Code::UNKNOWN, e))?;
        let io = prepared.io;
        drop(prepared.fds);
        let mut t = self.inner.lock();
        let early = t.early.remove(&pid);
        if let Some(p) = t
            .containers
            .get_mut(&req.id)
            .and_then(|c| c.execs.get_mut(&req.exec_id))
        {
            p.pid = pid;
            p.io = io;
            p.spec = None;
            if let Some(code) = early {
                p.exit = Some((code as u32, now()));
            }
        }
        drop(t);
        if early.is_some() {
            self.inner.exited.notify_all();
        }
        self.inner.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        if let Some(code) = early {
            self.inner.publish(
                topics::TASK_EXIT_EVENT_TOPIC,
                TaskExit {
                    container_id: req.id.clone(),
                    id: req.exec_id.clone(),
                    pid: pid as u32,
                    exit_status: code as u32,
                    exited_at: Some(now()).into(),
                    ..Default::default()
                },
            );
        }
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let p = self.inner.with_proc(&req.id, &req.exec_id, |c, _| {
                let p = c
                    .execs
                    .get(&req.exec_id)
                    .ok_or_else(|| not_found(&req.exec_id))?;
                if p.pid != 0 && p.exit.is_none() {
                    return Err(err(
                        ttrpc::Code::FAILED_PRECONDITION,
                        format!("exec {} is still running", req.exec_id),
                    ));
                }
                Ok(c.execs.remove(&req.exec_id).unwrap_or_default())
            })?;
            let (status, at) = p.exit.unwrap_or((0, now()));
            return Ok(api::DeleteResponse {
                pid: p.pid as u32,
                exit_status: status,
                exited_at: Some(at).into(),
                ..Default::default()
            });
        }
        let (pid, exit, bundle, mounted) = self.inner.with_proc(&req.id, "", |c, _| {
            Ok((c.init.pid, c.init.exit.clone(), c.bundle.clone(), c.mounted))
        })?;
        let (rt, id) = (self.inner.runtime.clone(), req.id.clone());
        // A created (never started) container may be deleted; a running one may not.
        let force = exit.is_none()
            && self
                .inner
                .runtime
                .state(&req.id)
                .is_ok_and(|s| s.status == Status::Created);
        // poststop hooks run in the helper.
        helper::run([None, None, None], move || {
            rt.delete(&id, force).map(drop).map_err(|e| e.to_string())
        })
        .map_err(|e| err(ttrpc::Code::FAILED_PRECONDITION, e))?;
        if mounted {
            unmount_rootfs(&bundle);
        }
        let (status, at) = exit.unwrap_or((128 + libc::SIGKILL as u32, now()));
        let mut t = self.inner.lock();
        t.containers.remove(&req.id);
        drop(t);
        self.inner.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                pid: pid as u32,
                exit_status: status,
                exited_at: Some(at.clone()).into(),
                ..Default::default()
            },
        );
        Ok(api::DeleteResponse {
            pid: pid as u32,
            exit_status: status,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        self.inner.with_proc(&req.id, "", |_, _| Ok(()))?;
        let pids = self.inner.runtime.pids(&req.id).map_err(core_err)?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| containerd_shim::protos::types::task::ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.inner.with_proc(&req.id, "", |_, _| Ok(()))?;
        self.inner.runtime.pause(&req.id).map_err(core_err)?;
        self.inner.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            TaskPaused {
                container_id: req.id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::default())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.inner.with_proc(&req.id, "", |_, _| Ok(()))?;
        self.inner.runtime.resume(&req.id).map_err(core_err)?;
        self.inner.publish(
            topics::TASK_RESUMED_EVENT_TOPIC,
            TaskResumed {
                container_id: req.id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::default())
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let (pid, exited) = self.inner.with_proc(&req.id, &req.exec_id, |c, e| {
            let p = proc_of(c, e);
            Ok((p.pid, p.exit.is_some()))
        })?;
        if exited || pid == 0 {
            return Err(err(
                ttrpc::Code::NOT_FOUND,
                "process already finished: not found",
            ));
        }
        if req.exec_id.is_empty() {
            self.inner
                .runtime
                .kill(&req.id, req.signal as i32, req.all)
                .map_err(core_err)?;
        } else {
            tinyo_core::sys::kill(pid, req.signal as i32).map_err(|e| {
                err(
                    ttrpc::Code::NOT_FOUND,
                    format!("signalling exec {}: {e}", req.exec_id),
                )
            })?;
        }
        Ok(api::Empty::default())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let spec: oci_spec::runtime::Process =
            serde_json::from_slice(&req.spec.value).map_err(|e| {
                err(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("exec {} process spec: {e}", req.exec_id),
                )
            })?;
        self.inner.with_proc(&req.id, "", |c, _| {
            if c.execs.contains_key(&req.exec_id) {
                return Err(err(
                    ttrpc::Code::ALREADY_EXISTS,
                    format!("exec {}: already exists", req.exec_id),
                ));
            }
            c.execs.insert(
                req.exec_id.clone(),
                Proc {
                    paths: Paths {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                    },
                    spec: Some(spec),
                    ..Default::default()
                },
            );
            Ok(())
        })?;
        self.inner.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::default())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        self.inner.with_proc(&req.id, &req.exec_id, |c, e| {
            proc_of(c, e)
                .io
                .resize(req.width, req.height)
                .map_err(|e| err(ttrpc::Code::INTERNAL, format!("resizing the pty: {e}")))
        })?;
        Ok(api::Empty::default())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        self.inner.with_proc(&req.id, &req.exec_id, |c, e| {
            proc_of(c, e).io.close_stdin();
            Ok(())
        })?;
        Ok(api::Empty::default())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        self.inner.with_proc(&req.id, "", |_, _| Ok(()))?;
        let res: oci_spec::runtime::LinuxResources = serde_json::from_slice(&req.resources.value)
            .map_err(|e| {
            err(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("update resources: {e}"),
            )
        })?;
        self.inner.runtime.update(&req.id, &res).map_err(core_err)?;
        Ok(api::Empty::default())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let mut t = self.inner.lock();
        loop {
            let c = t
                .containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(&req.id))?;
            let p = if req.exec_id.is_empty() {
                &c.init
            } else {
                c.execs
                    .get(&req.exec_id)
                    .ok_or_else(|| not_found(&req.exec_id))?
            };
            if let Some((status, at)) = &p.exit {
                return Ok(api::WaitResponse {
                    exit_status: *status,
                    exited_at: Some(at.clone()).into(),
                    ..Default::default()
                });
            }
            t = self.inner.exited.wait(t).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let (bundle, pid, paths, exit) = self.inner.with_proc(&req.id, &req.exec_id, |c, e| {
            let bundle = c.bundle.display().to_string();
            let p = proc_of(c, e);
            Ok((bundle, p.pid, p.paths.clone(), p.exit.clone()))
        })?;
        let status = match (&exit, pid) {
            (Some(_), _) => api::Status::STOPPED,
            (None, 0) => api::Status::CREATED,
            (None, _) if !req.exec_id.is_empty() => api::Status::RUNNING,
            (None, _) => match self.inner.runtime.state(&req.id).map(|s| s.status) {
                Ok(Status::Creating | Status::Created) => api::Status::CREATED,
                Ok(Status::Paused) => api::Status::PAUSED,
                Ok(Status::Stopped) => api::Status::STOPPED,
                Ok(Status::Running) => api::Status::RUNNING,
                Err(_) => api::Status::UNKNOWN,
            },
        };
        let (exit_status, exited_at) = exit.map_or((0, None), |(s, at)| (s, Some(at)));
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle,
            pid: pid as u32,
            status: status.into(),
            stdin: paths.stdin,
            stdout: paths.stdout,
            stderr: paths.stderr,
            terminal: paths.terminal,
            exit_status,
            exited_at: exited_at.into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        self.inner.with_proc(&req.id, "", |_, _| Ok(()))?;
        let s = self.inner.runtime.stats(&req.id).map_err(core_err)?;
        let any = metrics::any(&s).map_err(|e| err(ttrpc::Code::INTERNAL, e))?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // The last container gone (or `now`): the shim exits.
        if req.now || self.inner.lock().containers.is_empty() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::default())
    }
}
