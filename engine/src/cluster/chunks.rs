//! Opaque payloads (tasks, results, broadcasts, shuffle buckets) cross the wire as streams of
//! chunks no larger than [`CHUNK`], so a message size limit never bounds a payload; the receiver
//! bounds the total instead.

use tonic::{Status, Streaming};

/// Bytes per chunk message.
pub const CHUNK: usize = 1 << 20;
/// Every gRPC server and client of the cluster sets this decoding limit explicitly; chunks stay
/// well under it.
pub const MAX_MESSAGE: usize = 4 * CHUNK;
/// The largest payload a receiver assembles (a task, a result, a broadcast).
pub const MAX_PAYLOAD: usize = 4 << 30;

/// Splits `bytes` into chunk-sized pieces; an empty payload is one empty piece, so the first
/// message (which carries the header fields) always exists.
pub fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return vec![Vec::new()];
    }
    bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

/// Concatenates a stream of messages' data fields; `header` sees the first message.
pub async fn collect<M, H>(
    mut stream: Streaming<M>,
    data: impl Fn(&mut M) -> Vec<u8>,
    mut header: H,
) -> Result<Vec<u8>, Status>
where
    H: FnMut(&M),
{
    let mut out = Vec::new();
    let mut first = true;
    while let Some(mut m) = stream.message().await? {
        if first {
            header(&m);
            first = false;
        }
        let d = data(&mut m);
        if out.len() + d.len() > MAX_PAYLOAD {
            return Err(Status::resource_exhausted(format!(
                "payload larger than {MAX_PAYLOAD} bytes"
            )));
        }
        if out.is_empty() {
            out = d;
        } else {
            out.extend_from_slice(&d);
        }
    }
    if first {
        return Err(Status::invalid_argument("empty stream: no header message"));
    }
    Ok(out)
}
