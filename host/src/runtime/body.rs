//! Streamed response bodies (`wit/body.wit`): a guest's `ReadableStream`
//! body or server-sent events leave the host as they are written, and a
//! response with such a body can be handed from an object through a worker
//! to the client without being read.
//!
//! A body is a bounded channel of [`Chunk`]s: the writer (a guest, through
//! `body.start-write` operations) waits for room, so a slow reader slows
//! the writer instead of filling memory. Each guest instance keeps its
//! bodies by number in its [`Bodies`]: the ones it writes, and the ones it
//! received in a response and may read or hand on. A body whose writer goes
//! away without closing it fails for its reader, so a client never takes a
//! cut body for a whole one.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{Semaphore, mpsc};

use super::bindings::WitResponse;
use super::bindings::object::dohost::object::events::Outcome;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::{Gate, pass_gate};

/// Chunks a body holds between its writer and its reader.
const CHUNKS_IN_FLIGHT: usize = 8;

/// What goes through a body's channel.
enum Chunk {
    Data(Bytes),
    /// The writer closed the body: it is whole.
    End,
    /// The writer closed the body with an error.
    Failed(String),
}

/// The reading end of a streamed body.
pub(crate) struct BodyStream {
    rx: mpsc::Receiver<Chunk>,
    done: bool,
    /// A failure held back for one poll of the edge's body (see
    /// `poll_frame`).
    failure: Option<String>,
}

impl BodyStream {
    /// The next piece of the body: `None` at its end.
    async fn next(&mut self) -> Option<std::result::Result<Bytes, String>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Bytes, String>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Chunk::Data(bytes)) => return Poll::Ready(Some(Ok(bytes))),
            Some(Chunk::End) => None,
            Some(Chunk::Failed(message)) => Some(Err(message)),
            None => Some(Err(
                "the body's writer went away before it ended the body (its instance was reset or finished without closing it)"
                    .to_owned(),
            )),
        };
        self.done = true;
        Poll::Ready(next)
    }
}

/// A response body: whole, or streamed as an object or worker writes it.
///
/// It is an [`http_body`](hyper::body::Body) of [`Bytes`], so hyper sends it
/// as it comes; [`Body::bytes`] waits for all of it.
pub struct Body(Inner);

enum Inner {
    Whole(Option<Bytes>),
    Streamed(BodyStream),
}

impl Body {
    /// A streamed body.
    pub(crate) fn streamed(stream: BodyStream) -> Body {
        Body(Inner::Streamed(stream))
    }

    /// Whether the body arrives in pieces, as its guest writes it.
    pub fn is_streamed(&self) -> bool {
        matches!(self.0, Inner::Streamed(_))
    }

    /// The whole body, once it has all arrived.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::GuestError`] when the guest writing the body ended it
    /// with an error, or went away before its end.
    pub async fn bytes(self) -> Result<Bytes> {
        Ok(self.collect().await?.to_bytes())
    }

    /// `response` with its body read whole ([`Body::bytes`]).
    pub(crate) async fn whole(response: http::Response<Body>) -> Result<http::Response<Bytes>> {
        let (head, body) = response.into_parts();
        Ok(http::Response::from_parts(head, body.bytes().await?))
    }
}

fn body_error(message: String) -> Error {
    Error::new(
        ErrorKind::GuestError,
        format!("the streamed body failed: {message}"),
    )
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body(Inner::Whole(Some(bytes)))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::from(Bytes::from(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::from(Bytes::from(text))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::from(Bytes::new())
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Whole(bytes) => f
                .debug_tuple("Body")
                .field(&bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Inner::Streamed(_) => f.write_str("Body(streamed)"),
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>>>> {
        match &mut self.get_mut().0 {
            Inner::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Streamed(stream) => {
                if let Some(message) = stream.failure.take() {
                    return Poll::Ready(Some(Err(body_error(message))));
                }
                match std::task::ready!(stream.poll_next(cx)) {
                    // hyper drops the connection on a body's error without
                    // writing what it holds: held back one poll, the error
                    // lets it flush the head and the chunks before it, so a
                    // client sees what was written, then the cut.
                    Some(Err(message)) => {
                        stream.failure = Some(message);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Some(Ok(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Whole(bytes) => bytes.is_none(),
            Inner::Streamed(stream) => stream.done && stream.failure.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Streamed(_) => SizeHint::default(),
        }
    }
}

/// The bodies of one guest instance, by number: shared with the
/// operations that write and read them.
#[derive(Clone, Default)]
pub(crate) struct Bodies(Arc<Mutex<Table>>);

#[derive(Default)]
struct Table {
    last: u64,
    entries: HashMap<u64, Entry>,
}

/// One body of the instance.
struct Entry {
    /// The writing end, for a body the guest opened and has not closed.
    tx: Option<mpsc::Sender<Chunk>>,
    /// The reading end, until it is handed on or while no read is in
    /// flight.
    rx: Option<BodyStream>,
    /// One permit, held by the write in flight: writes go one at a time,
    /// and the close waits for the last.
    writer: Arc<Semaphore>,
}

impl Bodies {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new body for the guest to write: its number.
    pub(crate) fn open(&self) -> u64 {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        self.insert(Entry {
            tx: Some(tx),
            rx: Some(BodyStream {
                rx,
                done: false,
                failure: None,
            }),
            writer: Arc::new(Semaphore::new(1)),
        })
    }

    /// Gives the guest `stream`, a body it received: its number.
    pub(crate) fn receive(&self, stream: BodyStream) -> u64 {
        self.insert(Entry {
            tx: None,
            rx: Some(stream),
            writer: Arc::new(Semaphore::new(1)),
        })
    }

    fn insert(&self, entry: Entry) -> u64 {
        let mut table = self.table();
        table.last += 1;
        let number = table.last;
        table.entries.insert(number, entry);
        number
    }

    /// Takes the reading end of body `number` for a response the guest
    /// returns.
    pub(crate) fn hand_on(&self, number: u64) -> std::result::Result<BodyStream, String> {
        let mut table = self.table();
        let entry = table
            .entries
            .get_mut(&number)
            .ok_or_else(|| unknown(number))?;
        let stream = entry.rx.take().ok_or_else(|| {
            format!("body {number} was returned in a response already, or is being read")
        })?;
        if entry.tx.is_none() {
            table.entries.remove(&number);
        }
        Ok(stream)
    }

    /// The operation that writes `chunk` to body `number`.
    pub(crate) fn write(&self, number: u64, chunk: Vec<u8>) -> BoxFuture<'static, Outcome> {
        let writing = {
            let table = self.table();
            match table.entries.get(&number) {
                Some(Entry {
                    tx: Some(tx),
                    writer,
                    ..
                }) => match writer.clone().try_acquire_owned() {
                    Ok(permit) => Ok((tx.clone(), permit)),
                    Err(_) => Err(format!(
                        "a write to body {number} is in flight: wait for its outcome before the next"
                    )),
                },
                Some(_) => Err(format!(
                    "body {number} is not one this guest writes, or it is closed"
                )),
                None => Err(unknown(number)),
            }
        };
        match writing {
            Ok((tx, permit)) => Box::pin(async move {
                let sent = tx.send(Chunk::Data(Bytes::from(chunk))).await;
                drop(permit);
                Outcome::Written(sent.map_err(|_| {
                    "the body's reader went away (the client closed its connection)".to_owned()
                }))
            }),
            Err(message) => Box::pin(std::future::ready(Outcome::Written(Err(message)))),
        }
    }

    /// Closes body `number`, which the guest writes; what ends it once the
    /// writes before it are durable, `None` if it is not open.
    pub(crate) fn close(&self, number: u64, error: Option<String>) -> Option<Closing> {
        let mut table = self.table();
        let entry = table.entries.get_mut(&number)?;
        let tx = entry.tx.take()?;
        let writer = entry.writer.clone();
        if entry.rx.is_none() {
            table.entries.remove(&number);
        }
        Some(Closing { tx, writer, error })
    }

    /// The operation that reads the next chunk of body `number`.
    pub(crate) fn read(&self, number: u64) -> BoxFuture<'static, Outcome> {
        let taken = match self.table().entries.get_mut(&number) {
            Some(Entry { tx: None, rx, .. }) => rx.take(),
            _ => None,
        };
        let Some(mut stream) = taken else {
            return Box::pin(std::future::ready(Outcome::Read(Err(format!(
                "body {number} is not one this guest received, or a read of it is in flight"
            )))));
        };
        let bodies = self.clone();
        Box::pin(async move {
            let next = stream.next().await;
            let mut table = bodies.table();
            match next {
                Some(Ok(chunk)) => {
                    if let Some(entry) = table.entries.get_mut(&number) {
                        entry.rx = Some(stream);
                    }
                    Outcome::Read(Ok(Some(chunk.to_vec())))
                }
                None => {
                    table.entries.remove(&number);
                    Outcome::Read(Ok(None))
                }
                Some(Err(message)) => {
                    table.entries.remove(&number);
                    Outcome::Read(Err(message))
                }
            }
        })
    }

    /// Forgets body `number`: its writer's next write fails.
    pub(crate) fn discard(&self, number: u64) {
        self.table().entries.remove(&number);
    }

    /// Whether a body the guest writes is open and its reader still there:
    /// the object is serving it and stays in memory.
    pub(crate) fn serving(&self) -> bool {
        self.table()
            .entries
            .values()
            .any(|e| e.rx.is_none() && e.tx.as_ref().is_some_and(|tx| !tx.is_closed()))
    }

    /// Forgets every body (the worker's request is over): bodies still
    /// open fail for their readers.
    pub(crate) fn clear(&self) {
        self.table().entries.clear();
    }
}

fn unknown(number: u64) -> String {
    format!("there is no body {number} (it was never opened, or is used up)")
}

/// A body's `close`, sent once the writes made before it are durable.
pub(crate) struct Closing {
    tx: mpsc::Sender<Chunk>,
    writer: Arc<Semaphore>,
    error: Option<String>,
}

impl Closing {
    /// Ends the body after `gate` and the write in flight, if any. If the
    /// writes before it could not be made durable the body fails instead,
    /// so its reader never takes it for whole.
    pub(crate) async fn send(self, gate: Option<Gate>) {
        let _last_write = self.writer.acquire().await;
        let last = match (pass_gate(gate).await, self.error) {
            (Err(e), _) => Chunk::Failed(format!(
                "the writes made before its end could not be made durable ({e})"
            )),
            (Ok(()), Some(message)) => Chunk::Failed(message),
            (Ok(()), None) => Chunk::End,
        };
        let _ = self.tx.send(last).await;
    }
}

/// A response as a guest returned it: the record, and its streamed body
/// when the record's `stream` named one (taken from the guest's
/// [`Bodies`]).
pub(crate) struct GuestResponse {
    pub(crate) record: WitResponse,
    pub(crate) stream: Option<BodyStream>,
}

impl GuestResponse {
    /// The response `record` a guest returned, its streamed body taken from
    /// `bodies`.
    pub(crate) fn returned(
        mut record: WitResponse,
        bodies: &Bodies,
    ) -> std::result::Result<GuestResponse, String> {
        let stream = match record.stream.take() {
            Some(number) => Some(bodies.hand_on(number)?),
            None => None,
        };
        Ok(GuestResponse { record, stream })
    }

    /// The response as a record for a guest that receives it, its streamed
    /// body given to the guest's `bodies`.
    pub(crate) fn received(self, bodies: &Bodies) -> WitResponse {
        let mut record = self.record;
        record.stream = self.stream.map(|stream| bodies.receive(stream));
        record
    }
}
