// The `sse_parser` oracles: the SSE pipeline of signalr-transport against a plain reference
// parser, whole and chunked. Shared by the fuzz target (`include!`) and by
// signalr-transport/tests/sse_corpus.rs (`#[path]` module).
use std::{
    cell::RefCell,
    collections::VecDeque,
    pin::pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures_util::Stream;

/// The maximum message sizes an input can pick: small, so that inputs reach them.
const MAXES: [usize; 4] = [8, 32, 256, 4096];

/// What the pipeline should make of `data`: the data of the events that end before the input
/// turns invalid, and, if it does, the offset of the first bad byte and how many bytes must
/// have been read for the error to be certain (`data.len() + 1`: at the end of the stream).
///
/// Invalid: not UTF-8, a line (bytes between CR/LF) longer than `max`, or an event (the lines
/// since the last blank line, line ends not counted) longer than twice `max`.
fn sse_model(data: &[u8], max: usize) -> (Vec<Bytes>, Option<(usize, usize)>) {
    let mut bad: Option<(usize, usize)> = match std::str::from_utf8(data) {
        Ok(_) => None,
        Err(e) => Some((
            e.valid_up_to(),
            e.error_len().map_or(data.len() + 1, |n| {
                (e.valid_up_to() + n + 1).min(data.len() + 1)
            }),
        )),
    };
    let (mut line, mut event, mut after_cr) = (0, 0, false);
    for (i, &b) in data.iter().enumerate() {
        if bad.is_some_and(|(at, _)| at <= i) {
            break;
        }
        if b == b'\n' && after_cr {
            after_cr = false;
            continue;
        }
        after_cr = b == b'\r';
        if b == b'\r' || b == b'\n' {
            if line == 0 {
                event = 0;
            }
            line = 0;
        } else {
            line += 1;
            event += 1;
            if line > max || event > 2 * max {
                bad = Some((i, i + 1));
                break;
            }
        }
    }
    let valid = &data[..bad.map_or(data.len(), |(at, _)| at)];
    // Cut at the last whole character: a line can go over the limit inside one.
    let valid = match std::str::from_utf8(valid) {
        Ok(_) => valid,
        Err(e) => &valid[..e.valid_up_to()],
    };
    let text = std::str::from_utf8(valid).expect("the valid prefix is UTF-8");
    // The WHATWG parsing rules, as plainly as possible.
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut events, mut buffer) = (Vec::new(), String::new());
    while let Some(end) = rest.find(['\r', '\n']) {
        let (line, after) = rest.split_at(end);
        if after == "\r" {
            break; // maybe the first half of a CRLF still on its way
        }
        rest = &after[if after.starts_with("\r\n") { 2 } else { 1 }..];
        if line.is_empty() {
            if buffer.pop().is_some() {
                events.push(Bytes::from(std::mem::take(&mut buffer)));
            }
        } else if !line.starts_with(':') {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            if name == "data" {
                buffer.push_str(value.strip_prefix(' ').unwrap_or(value));
                buffer.push('\n');
            }
        }
    }
    (events, bad)
}

/// The body as the pipeline sees it: chunks handed over one at a time, pending in between.
struct Feed(Rc<RefCell<(VecDeque<Bytes>, bool)>>);

impl Stream for Feed {
    type Item = Bytes;

    fn poll_next(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut feed = self.0.borrow_mut();
        match feed.0.pop_front() {
            Some(chunk) => Poll::Ready(Some(chunk)),
            None if feed.1 => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// Runs the pipeline over `data` in pieces of `chunk` bytes: each item with how many bytes had
/// been handed over when it came out (`data.len() + 1` once the body ended).
fn sse_run(data: &[u8], chunk: usize, max: usize) -> Vec<(usize, Result<Bytes, String>)> {
    let feed = Rc::new(RefCell::new((VecDeque::new(), false)));
    let mut events = pin!(signalr_transport::fuzzing::sse_events(
        Feed(Rc::clone(&feed)),
        max
    ));
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut pieces = data.chunks(chunk.max(1));
    let mut fed = 0;
    loop {
        let ended = if let Some(piece) = pieces.next() {
            fed += piece.len();
            feed.borrow_mut().0.push_back(Bytes::copy_from_slice(piece));
            false
        } else {
            feed.borrow_mut().1 = true;
            fed = data.len() + 1;
            true
        };
        loop {
            match events.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(e))) => out.push((fed, Ok(e))),
                Poll::Ready(Some(Err(e))) => {
                    out.push((fed, Err(e.to_string())));
                    return out;
                }
                Poll::Ready(None) => {
                    assert!(ended, "the events ended before the body did");
                    return out;
                }
                Poll::Pending => {
                    assert!(!ended, "pending after the body ended");
                    break;
                }
            }
        }
    }
}

/// One input: the first byte picks the maximum size and the chunk size. The pipeline, whole
/// and chunked, must give the model's events; on invalid input, a prefix of them and then an
/// error, which must come as soon as the bad byte has been read (nothing unbounded is buffered
/// waiting for more).
pub(crate) fn sse_parser(data: &[u8]) {
    let Some((&config, data)) = data.split_first() else {
        return;
    };
    let max = MAXES[usize::from(config & 3)];
    let (events, bad) = sse_model(data, max);
    for chunk in [data.len(), usize::from(config >> 2) + 1] {
        let out = sse_run(data, chunk, max);
        let got: Vec<&Bytes> = out.iter().filter_map(|(_, e)| e.as_ref().ok()).collect();
        let error = out
            .iter()
            .find_map(|(fed, e)| e.as_ref().err().map(|e| (*fed, e)));
        match (bad, error) {
            (None, None) => assert_eq!(got, events.iter().collect::<Vec<_>>(), "chunk {chunk}"),
            (None, Some((_, e))) => panic!("chunk {chunk}: error {e} on a valid stream"),
            (Some((at, _)), None) => panic!("chunk {chunk}: no error for the bad byte at {at}"),
            (Some((at, due)), Some((fed, e))) => {
                assert!(
                    events.starts_with(&got.into_iter().cloned().collect::<Vec<_>>()),
                    "chunk {chunk}: {e}"
                );
                assert!(
                    fed > at,
                    "chunk {chunk}: error {e} after {fed} bytes, before the bad byte at {at}"
                );
                // The chunk that holds the byte making it certain must fail.
                let due_fed = if due > data.len() {
                    due
                } else {
                    due.div_ceil(chunk.max(1))
                        .saturating_mul(chunk.max(1))
                        .min(data.len())
                };
                assert!(
                    fed <= due_fed,
                    "chunk {chunk}: error {e} after {fed} bytes, due at {due} (bad byte at {at})"
                );
            }
        }
    }
}
