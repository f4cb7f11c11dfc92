//! Events to containerd over ttrpc, without threads.
//!
//! `containerd-shim`'s `RemotePublisher` holds a ttrpc-rust client for the life of the shim, and
//! that client's reader thread polls its socket with a 10 ms timeout: 100 wake-ups a second in
//! every idle shim, plus two threads. A shim sends a handful of events per container, one at a
//! time, so this client is a blocking request/response on one Unix socket, under a lock:
//! connected on first use, dropped on any error and redialled once.
//!
//! Wire format (ttrpc): a 10-byte header (length and stream id as big-endian u32, message type,
//! flags), then a protobuf `ttrpc.Request`; the reply is a `ttrpc.Response` with the same odd
//! stream id.

use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::{self, MessageHeader};

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
const HEADER: usize = 10;
const RESPONSE: u8 = 2;
/// How long containerd may take to take an event before we give up on it.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Far above any reply to `Forward` (an empty message or a status).
const MAX_REPLY: u32 = 4 << 20;

/// containerd's Events service at its ttrpc address.
#[derive(Debug)]
pub struct Publisher {
    address: String,
    conn: Mutex<Option<(UnixStream, u32)>>,
}

impl Publisher {
    pub fn new(address: String) -> Self {
        Self {
            address,
            conn: Mutex::new(None),
        }
    }

    /// `Events.Forward(req)`; an error names what failed.
    pub fn forward(&self, req: &ForwardRequest) -> io::Result<()> {
        let payload = req.write_to_bytes().map_err(io::Error::other)?;
        let request = ttrpc::Request {
            service: SERVICE.into(),
            method: "Forward".into(),
            payload,
            timeout_nano: TIMEOUT.as_nanos() as i64,
            ..Default::default()
        }
        .write_to_bytes()
        .map_err(io::Error::other)?;
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // A connection containerd closed (it restarted) fails the first try: redial once.
        let mut redialled = false;
        loop {
            let (stream, id) = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert((self.dial()?, 1)),
            };
            let stream_id = *id;
            *id = id.wrapping_add(2);
            let Err(e) = call(stream, stream_id, &request) else {
                return Ok(());
            };
            if e.kind() != io::ErrorKind::Other {
                *conn = None;
            }
            // Only a connection that was closed under us is retried: after a timeout
            // containerd may still take the event, and it must not arrive twice.
            if redialled || !closed(&e) {
                return Err(e);
            }
            redialled = true;
        }
    }

    fn dial(&self) -> io::Result<UnixStream> {
        let fd = containerd_shim::util::connect(&self.address).map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("connecting to {}: {e}", self.address),
            )
        })?;
        // SAFETY: `connect` returns a freshly connected socket that nothing else owns.
        let s = unsafe { UnixStream::from_raw_fd(fd) };
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        Ok(s)
    }
}

fn closed(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::BrokenPipe | K::ConnectionReset | K::UnexpectedEof | K::NotConnected
    )
}

/// One request and its reply. A refusal by containerd is `ErrorKind::Other`; anything else is
/// the connection's fault.
fn call(s: &mut UnixStream, stream_id: u32, request: &[u8]) -> io::Result<()> {
    let mut msg: Vec<u8> = MessageHeader::new_request(stream_id, request.len() as u32).into();
    msg.extend_from_slice(request);
    s.write_all(&msg)?;
    loop {
        let mut h = [0u8; HEADER];
        s.read_exact(&mut h)?;
        let h = MessageHeader::from(h);
        if h.length > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a {}-byte ttrpc reply", h.length),
            ));
        }
        let mut body = vec![0u8; h.length as usize];
        s.read_exact(&mut body)?;
        if h.type_ != RESPONSE || h.stream_id != stream_id {
            continue; // not ours (a late reply to a request that timed out)
        }
        let r = ttrpc::Response::parse_from_bytes(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let status = r.status.get_or_default();
        return match status.code.enum_value_or_default() {
            ttrpc::Code::OK => Ok(()),
            code => Err(io::Error::other(format!(
                "containerd refused the event: {code:?}: {}",
                status.message
            ))),
        };
    }
}
