//! Plugin file writes, buffered on the host and written off the frame path.
//!
//! A guest writes a file through an output stream (`write-via-stream`, `append-via-stream`);
//! here such a stream puts the bytes in its instance's buffer and returns at once: no system
//! call, no thread hop, nothing that can wait on a disk during a plugin call. The buffer is
//! written out on tokio's blocking pool, at most one write-out per instance at a time, in
//! the order the guest wrote:
//!
//! - every [`FLUSH_INTERVAL`], by the process's flusher thread: nothing buffered waits
//!   longer than that for its write-out to start, so `kill -9` loses at most what the last
//!   interval wrote. Calls do not start write-outs of their own: at real-time pace a
//!   recorder's call writes one frame, and a thread hop per call cost more than the write
//!   (one write-out per interval gathers a few hundred calls' bytes into one system call);
//! - whenever the buffer holds [`KICK_AT`] bytes or more;
//! - before any filesystem call of the instance that could see or change what it wrote
//!   (reads, `stat`, `set-size`, `open-at` with `truncate`, `sync`: see `super::fs`), which
//!   waits for it; `sync` and `sync-data` then reach the disk as the guest asked;
//! - when the session ends, a reload swaps the version, or the instance is dropped (a trap);
//!   and for every instance at shutdown ([`Flusher::flush_all`]).
//!
//! An instance holds at most [`BUFFER_BYTES`] not yet written: past that its streams report
//! no room and the guest waits (on its own call, never on the session's task) until the
//! write-out catches up; a write-out that never returns (a FIFO nobody reads, a hung network
//! mount) holds only that instance, whose call then runs into its deadline. A failed write
//! (disk full, a closed pipe) is reported to the guest by the next operation on a stream of
//! that file, and the file's later buffered writes are skipped.
//!
//! Writes are ordered per descriptor; two descriptors of the same file are written in the
//! order the guest wrote through them, since the buffer is one ordered list per instance.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Bytes an instance may have buffered and not yet written.
pub const BUFFER_BYTES: usize = 1 << 20;

/// A buffer this full is written out at once, without waiting for the interval.
pub const KICK_AT: usize = 64 * 1024;

/// Every buffered byte is handed to the operating system within this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Most bytes one `check-write` grants (a guest may allocate that much at once).
const WRITE_PERMIT: usize = 64 * 1024;

/// Chunks looked back at for one to extend or overwrite in place.
const MERGE_SCAN: usize = 8;

/// Failed files remembered per instance.
const MAX_FAILED: usize = 64;

/// Every instance's buffer, for the periodic write-out and the one at shutdown.
pub struct Flusher {
    bufs: Mutex<Vec<Weak<Shared>>>,
    stop: AtomicBool,
}

impl Flusher {
    /// A flusher with its thread, which writes every buffer out each [`FLUSH_INTERVAL`] until
    /// the flusher is dropped.
    pub fn start() -> anyhow::Result<Arc<Self>> {
        let me = Arc::new(Self {
            bufs: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&me);
        std::thread::Builder::new()
            .name("plugin-files".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    let Some(me) = weak.upgrade() else { return };
                    if me.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    for buf in me.live() {
                        kick(&buf);
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the plugin file writer thread: {e}"))?;
        Ok(me)
    }

    /// A buffer for one instance.
    pub fn buffer(&self) -> FileBuf {
        let shared = Arc::new(Shared {
            st: Mutex::new(State::default()),
            changed: Notify::new(),
            rt: tokio::runtime::Handle::try_current().ok(),
        });
        // The flusher's thread forgets the buffers of instances gone at its next round.
        self.bufs.lock().push(Arc::downgrade(&shared));
        FileBuf(shared)
    }

    fn live(&self) -> Vec<Arc<Shared>> {
        let mut bufs = self.bufs.lock();
        bufs.retain(|w| w.strong_count() > 0);
        bufs.iter().filter_map(Weak::upgrade).collect()
    }

    /// Writes out every buffer and waits up to `within` for them; returns how many bytes
    /// were still not written then (a stalled file).
    pub async fn flush_all(&self, within: Duration) -> u64 {
        let bufs = self.live();
        let settled = futures_util::future::join_all(
            bufs.iter()
                .map(|b| async move { tokio::time::timeout(within, settle(b)).await.is_ok() }),
        )
        .await;
        bufs.iter()
            .zip(settled)
            .filter(|(_, ok)| !ok)
            .map(|(b, _)| b.st.lock().bytes as u64)
            .sum()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One instance's buffer. Dropping a handle starts the write-out of what it still holds.
pub struct FileBuf(Arc<Shared>);

impl Clone for FileBuf {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl FileBuf {
    /// An output stream of `file` at `at` (`None`: appending) whose writes go to this
    /// buffer.
    pub fn stream(&self, file: Arc<File>, at: Option<u64>) -> BufferedStream {
        BufferedStream {
            buf: self.0.clone(),
            file,
            at,
        }
    }

    /// Starts writing out what the buffer holds, unless a write-out runs (it takes it).
    pub fn kick(&self) {
        kick(&self.0);
    }

    /// Bytes buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.0.st.lock().bytes
    }

    /// Writes out what the buffer holds and waits until it is written (or failed).
    pub async fn settle(&self) {
        settle(&self.0).await;
    }
}

impl Drop for FileBuf {
    fn drop(&mut self) {
        kick(&self.0);
    }
}

struct Shared {
    st: Mutex<State>,
    /// Signalled after each write-out round: room was made, bytes were written.
    changed: Notify,
    /// Where write-outs run; `None` outside a runtime (they then run on the caller).
    rt: Option<tokio::runtime::Handle>,
}

#[derive(Default)]
struct State {
    chunks: Vec<Chunk>,
    /// Bytes buffered or being written.
    bytes: usize,
    /// Bytes ever buffered, and ever written (or failed): a wait for "what was buffered
    /// until now" waits for `written` to reach `pushed`.
    pushed: u64,
    written: u64,
    in_flight: bool,
    /// Files a write failed on (by the address of their `File`), with the error.
    failed: Vec<(usize, std::io::ErrorKind, String)>,
}

impl State {
    fn failure(&self, file: &Arc<File>) -> Option<std::io::Error> {
        let key = Arc::as_ptr(file) as usize;
        self.failed
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, kind, msg)| std::io::Error::new(*kind, msg.clone()))
    }

    /// Buffers `data` for `file` at `at`, extending or overwriting a recent chunk of the
    /// same file when that keeps the order of every write (a recorder's audio appended to
    /// one chunk and its header patched in place in another). Returns the bytes it adds
    /// to what must be written.
    fn push(&mut self, file: &Arc<File>, at: Option<u64>, data: &[u8]) -> usize {
        let len = data.len() as u64;
        let start = self.chunks.len().saturating_sub(MERGE_SCAN);
        let last = self.chunks.len();
        for i in (start..last).rev() {
            let c = &mut self.chunks[i];
            if !Arc::ptr_eq(&c.file, file) {
                break;
            }
            match (c.at, at) {
                (None, None) if i + 1 == last => {
                    c.data.extend_from_slice(data);
                    return data.len();
                }
                (Some(cs), Some(s)) => {
                    let ce = cs + c.data.len() as u64;
                    if s >= cs && s + len <= ce {
                        let from = (s - cs) as usize;
                        c.data[from..from + data.len()].copy_from_slice(data);
                        return 0;
                    }
                    if s == ce {
                        c.data.extend_from_slice(data);
                        return data.len();
                    }
                    if s < ce && cs < s + len {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.chunks.push(Chunk {
            file: file.clone(),
            at,
            data: data.to_vec(),
        });
        data.len()
    }
}

struct Chunk {
    file: Arc<File>,
    /// Where it goes; `None`: at the end of the file.
    at: Option<u64>,
    data: Vec<u8>,
}

/// Starts a write-out of `buf` unless one runs or there is nothing to write.
fn kick(buf: &Arc<Shared>) {
    {
        let mut st = buf.st.lock();
        if st.in_flight || st.chunks.is_empty() {
            return;
        }
        st.in_flight = true;
    }
    let me = buf.clone();
    match &buf.rt {
        Some(rt) => drop(rt.spawn_blocking(move || write_out(&me))),
        None => write_out(&me),
    }
}

/// Writes chunks until none is left.
fn write_out(buf: &Shared) {
    loop {
        let chunks = {
            let mut st = buf.st.lock();
            if st.chunks.is_empty() {
                st.in_flight = false;
                drop(st);
                buf.changed.notify_waiters();
                return;
            }
            std::mem::take(&mut st.chunks)
        };
        let mut done = 0usize;
        let mut failed: Vec<(usize, std::io::ErrorKind, String)> = Vec::new();
        for c in chunks {
            done += c.data.len();
            let key = Arc::as_ptr(&c.file) as usize;
            if failed.iter().any(|(k, ..)| *k == key) || buf.st.lock().failure(&c.file).is_some() {
                continue;
            }
            if let Err(e) = write_chunk(&c) {
                failed.push((key, e.kind(), e.to_string()));
            }
        }
        let mut st = buf.st.lock();
        st.bytes -= done;
        st.written += done as u64;
        for f in failed {
            if st.failed.len() >= MAX_FAILED {
                st.failed.remove(0);
            }
            st.failed.push(f);
        }
        drop(st);
        buf.changed.notify_waiters();
    }
}

fn write_chunk(c: &Chunk) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    match c.at {
        Some(at) => c.file.write_all_at(&c.data, at),
        None => append_all(&c.file, &c.data),
    }
}

/// Writes `data` at the end of `file`, whatever its offset (WASI descriptors have no append
/// mode: `append-via-stream` asks for each write to go at the end).
fn append_all(file: &File, mut data: &[u8]) -> std::io::Result<()> {
    use rustix::io::{ReadWriteFlags, pwritev2};
    while !data.is_empty() {
        let n = pwritev2(
            file,
            &[std::io::IoSlice::new(data)],
            0,
            ReadWriteFlags::APPEND,
        )?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Waits until everything buffered in `buf` when called is written.
async fn settle(buf: &Arc<Shared>) {
    let target = buf.st.lock().pushed;
    loop {
        let changed = buf.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if buf.st.lock().written >= target {
            return;
        }
        kick(buf);
        changed.await;
    }
}

/// A guest's output stream on a file, writing into its instance's buffer.
pub struct BufferedStream {
    buf: Arc<Shared>,
    file: Arc<File>,
    /// The position of the next write; `None`: appending.
    at: Option<u64>,
}

impl BufferedStream {
    fn failed(&self, st: &State) -> StreamResult<()> {
        match st.failure(&self.file) {
            Some(e) => Err(StreamError::LastOperationFailed(e.into())),
            None => Ok(()),
        }
    }
}

impl OutputStream for BufferedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut st = self.buf.st.lock();
        self.failed(&st)?;
        if bytes.len() > BUFFER_BYTES.saturating_sub(st.bytes) {
            return Err(StreamError::trap(
                "write past what check-write allowed on a file stream",
            ));
        }
        let added = st.push(&self.file, self.at, &bytes);
        st.bytes += added;
        st.pushed += added as u64;
        if let Some(at) = &mut self.at {
            *at += bytes.len() as u64;
        }
        let full = st.bytes >= KICK_AT;
        drop(st);
        if full {
            kick(&self.buf);
        }
        Ok(())
    }

    /// The bytes are the host's once written: a flush completes at once (they reach the
    /// file within [`FLUSH_INTERVAL`]; `sync` waits for them).
    fn flush(&mut self) -> StreamResult<()> {
        self.failed(&self.buf.st.lock())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let st = self.buf.st.lock();
        self.failed(&st)?;
        let room = BUFFER_BYTES.saturating_sub(st.bytes).min(WRITE_PERMIT);
        drop(st);
        if room == 0 {
            kick(&self.buf);
        }
        Ok(room)
    }
}

#[async_trait::async_trait]
impl Pollable for BufferedStream {
    /// Ready when the buffer has room, or a write of this file failed.
    async fn ready(&mut self) {
        loop {
            let changed = self.buf.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let st = self.buf.st.lock();
                if st.bytes < BUFFER_BYTES || st.failure(&self.file).is_some() {
                    return;
                }
            }
            kick(&self.buf);
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path, name: &str) -> Arc<File> {
        Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(dir.join(name))
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn writes_in_order_with_patches_merged() {
        let d = tempfile::tempdir().unwrap();
        let flusher = Flusher::start().unwrap();
        let buf = flusher.buffer();
        let f = file(d.path(), "a");
        let mut head = buf.stream(f.clone(), Some(0));
        head.write(Bytes::from_static(b"HEAD0000")).unwrap();
        for i in 0..100u32 {
            let at = 8 + u64::from(i) * 4;
            buf.stream(f.clone(), Some(at))
                .write(Bytes::copy_from_slice(&i.to_le_bytes()))
                .unwrap();
            buf.stream(f.clone(), Some(4))
                .write(Bytes::copy_from_slice(&(i + 1).to_le_bytes()))
                .unwrap();
        }
        assert!(buf.0.st.lock().chunks.len() <= 2, "merged in place");
        buf.settle().await;
        let got = std::fs::read(d.path().join("a")).unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert_eq!(&got[4..8], &100u32.to_le_bytes());
        assert_eq!(got.len(), 8 + 400);
        assert_eq!(&got[8 + 99 * 4..], &99u32.to_le_bytes());
        assert_eq!(buf.pending(), 0);
    }

    #[tokio::test]
    async fn a_full_buffer_has_no_room_until_written_and_appends_keep_order() {
        let d = tempfile::tempdir().unwrap();
        let flusher = Flusher::start().unwrap();
        let buf = flusher.buffer();
        let a = file(d.path(), "a");
        let b = file(d.path(), "b");
        let mut sa = buf.stream(a, None);
        let mut sb = buf.stream(b, None);
        let mut written = 0;
        let mut turn = 0u8;
        while written < 3 * BUFFER_BYTES {
            let s = if turn.is_multiple_of(2) {
                &mut sa
            } else {
                &mut sb
            };
            let n = s.check_write().unwrap();
            if n == 0 {
                s.ready().await;
                continue;
            }
            let n = n.min(1000);
            s.write(Bytes::from(vec![b'a' + turn % 2; n])).unwrap();
            written += n;
            turn = turn.wrapping_add(1);
            assert!(buf.pending() <= BUFFER_BYTES);
        }
        drop(buf);
        assert_eq!(flusher.flush_all(Duration::from_secs(5)).await, 0);
        let la = std::fs::read(d.path().join("a")).unwrap();
        let lb = std::fs::read(d.path().join("b")).unwrap();
        assert_eq!(la.len() + lb.len(), written);
        assert!(la.iter().all(|c| *c == b'a') && lb.iter().all(|c| *c == b'b'));
    }

    #[tokio::test]
    async fn appends_go_at_the_end_whatever_the_offset() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"first\n").unwrap();
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .write(true)
                .open(d.path().join("a"))
                .unwrap(),
        );
        let flusher = Flusher::start().unwrap();
        let buf = flusher.buffer();
        buf.stream(f.clone(), None)
            .write(Bytes::from_static(b"second\n"))
            .unwrap();
        buf.settle().await;
        buf.stream(f, None)
            .write(Bytes::from_static(b"third\n"))
            .unwrap();
        buf.settle().await;
        let got = std::fs::read_to_string(d.path().join("a")).unwrap();
        assert_eq!(got, "first\nsecond\nthird\n");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_on_the_stream() {
        let flusher = Flusher::start().unwrap();
        let buf = flusher.buffer();
        // A read-only descriptor: the write-out fails with a bad-descriptor error.
        let f = Arc::new(File::open("/dev/null").unwrap());
        let mut s = buf.stream(f, Some(0));
        s.write(Bytes::from_static(b"x")).unwrap();
        buf.settle().await;
        assert!(matches!(
            s.check_write(),
            Err(StreamError::LastOperationFailed(_))
        ));
    }
}
