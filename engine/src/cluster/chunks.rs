//! Opaque payloads (tasks, results, broadcasts, shuffle buckets) cross the wire as streams of
//! chunks no larger than [`CHUNK`], so a message size limit never bounds a payload; the receiver
//! bounds the total instead.

use crate::core::sync::Locked;
use std::net::IpAddr;
use tonic::Status;

/// Bytes per chunk message.
pub const CHUNK: usize = 1 << 20;
/// Every gRPC server and client of the cluster sets this decoding limit explicitly; chunks stay
/// well under it.
pub const MAX_MESSAGE: usize = 4 * CHUNK;
/// The largest payload a receiver assembles (a task, a result, a broadcast): Spark's default
/// `spark.driver.maxResultSize`.
pub const MAX_PAYLOAD: usize = 1 << 30;
/// The most bytes a process assembles from all its incoming streams at once: many senders
/// cannot together make it hold more than this.
pub const MAX_IN_FLIGHT: usize = 2 << 30;

static IN_FLIGHT: Budget = Budget::new(MAX_IN_FLIGHT);
/// The most bytes one peer (by IP address) may have a process assemble at once, over all its
/// streams: one sender cannot take the whole process budget from the others.
pub const MAX_PER_PEER: usize = MAX_PAYLOAD;

static PER_PEER: std::sync::Mutex<Option<std::collections::HashMap<IpAddr, usize>>> =
    std::sync::Mutex::new(None);

/// Takes `n` bytes of `peer`'s share, or refuses with what it holds already.
fn reserve_peer(peer: IpAddr, n: usize) -> Result<(), usize> {
    let mut guard = PER_PEER.locked();
    let used = guard
        .get_or_insert_with(Default::default)
        .entry(peer)
        .or_default();
    match used.checked_add(n).filter(|&t| t <= MAX_PER_PEER) {
        Some(t) => {
            *used = t;
            Ok(())
        }
        None => Err(*used),
    }
}

fn release_peer(peer: IpAddr, n: usize) {
    let mut guard = PER_PEER.locked();
    if let Some(map) = guard.as_mut() {
        if let Some(used) = map.get_mut(&peer) {
            *used = used.saturating_sub(n);
            if *used == 0 {
                map.remove(&peer);
            }
        }
    }
}

/// A byte budget shared by concurrent receivers.
pub struct Budget {
    used: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            used: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `n` bytes, or refuses if that would pass the limit.
    pub fn reserve(&self, n: usize) -> Result<(), usize> {
        use std::sync::atomic::Ordering;
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used
                .checked_add(n)
                .filter(|&t| t <= self.limit)
                .ok_or(used)?;
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    pub fn release(&self, n: usize) {
        self.used.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What one stream holds of the budgets, given back when the stream's bytes are handed on.
struct Held<'a> {
    budget: &'a Budget,
    peer: Option<IpAddr>,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
        if let Some(p) = self.peer {
            release_peer(p, self.bytes);
        }
    }
}

/// Splits `bytes` into chunk-sized pieces; an empty payload is one empty piece, so the first
/// message (which carries the header fields) always exists.
pub fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return vec![Vec::new()];
    }
    bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

/// Assembles the payloads of a long-lived stream whose messages are pieces of many payloads,
/// possibly interleaved (a task channel), each under [`MAX_PAYLOAD`] and all of them, from a
/// peer and from every stream together, under [`MAX_PER_PEER`] and [`MAX_IN_FLIGHT`].
pub struct Assembler {
    peer: Option<IpAddr>,
    partial: std::collections::HashMap<u64, (Vec<u8>, Held<'static>)>,
}

impl Assembler {
    pub fn new(peer: Option<IpAddr>) -> Assembler {
        Assembler {
            peer,
            partial: Default::default(),
        }
    }

    /// Adds a piece of payload `id`; its whole bytes once `last` is set.
    pub fn push(&mut self, id: u64, data: Vec<u8>, last: bool) -> Result<Option<Vec<u8>>, Status> {
        let peer = self.peer;
        let (out, held) = self.partial.entry(id).or_insert_with(|| {
            (
                Vec::new(),
                Held {
                    budget: &IN_FLIGHT,
                    peer,
                    bytes: 0,
                },
            )
        });
        reserve(held, out.len(), data.len())?;
        if out.is_empty() {
            *out = data;
        } else {
            out.extend_from_slice(&data);
        }
        if !last {
            return Ok(None);
        }
        Ok(self.partial.remove(&id).map(|(bytes, _held)| bytes))
    }
}

/// Takes `n` more bytes for a payload of `have` bytes into `held`, or refuses with why.
fn reserve(held: &mut Held<'_>, have: usize, n: usize) -> Result<(), Status> {
    if have + n > MAX_PAYLOAD {
        return Err(Status::resource_exhausted(format!(
            "payload larger than {MAX_PAYLOAD} bytes (a task, result or broadcast must \
             fit in 1 GiB; collect less, or write the data with save_as_text_file)"
        )));
    }
    if let Some(p) = held.peer {
        reserve_peer(p, n).map_err(|used| {
            Status::resource_exhausted(format!(
                "{p} already has {used} bytes being assembled here (at most {MAX_PER_PEER} \
                 a peer); try again when its other streams are done"
            ))
        })?;
    }
    if let Err(used) = held.budget.reserve(n) {
        if let Some(p) = held.peer {
            release_peer(p, n);
        }
        return Err(Status::resource_exhausted(format!(
            "this process is already assembling {used} bytes from other streams (at most \
             {MAX_IN_FLIGHT}); try again when they are done"
        )));
    }
    held.bytes += n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_would_pass_its_limit_and_takes_back_what_is_released() {
        let b = Budget::new(10);
        assert_eq!(b.reserve(6), Ok(()));
        assert_eq!(b.reserve(5), Err(6));
        assert_eq!(b.reserve(4), Ok(()));
        b.release(6);
        assert_eq!(b.reserve(6), Ok(()));
        assert_eq!(b.reserve(usize::MAX), Err(10));
        {
            let _h = Held {
                budget: &b,
                peer: None,
                bytes: 10,
            };
        }
        assert_eq!(b.reserve(10), Ok(()));
    }

    #[test]
    fn one_peer_cannot_take_more_than_its_share() {
        let p: IpAddr = "192.0.2.7".parse().expect("an address");
        let q: IpAddr = "192.0.2.8".parse().expect("an address");
        assert_eq!(reserve_peer(p, MAX_PER_PEER - 1), Ok(()));
        assert_eq!(reserve_peer(p, 2), Err(MAX_PER_PEER - 1));
        assert_eq!(reserve_peer(q, 2), Ok(()), "another peer has its own share");
        release_peer(p, MAX_PER_PEER - 1);
        release_peer(q, 2);
        assert_eq!(reserve_peer(p, 2), Ok(()));
        release_peer(p, 2);
    }
}
