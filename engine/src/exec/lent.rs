//! Borrowed records: a partition's records lent to the next operator one at a time instead of
//! handed over as owned values. A text split lends each line as a `&str` slice of its read
//! buffer, a borrowed `flat_map` lends a line's words as slices of the line, and a combining
//! shuffle looks each word up by that slice, copying it only when the key is new. Nothing is
//! copied unless a consumer keeps a record: the owned-record operators get an owned copy
//! (`to_owned_record`) made at the boundary, and everything else (a shuffle's encoder, `count`)
//! works on the borrowed view.
//!
//! The stream is push-based and resumable: `LentSource::step` lends the records made from one
//! input unit (a line, an upstream record), so a consumer that needs an iterator buffers one
//! unit's output, never a partition's.

use crate::core::codec::{self, Data};
use crate::core::error::TaskFailure;
use crate::exec::stream::{self, BoxIter, Records, TypedIter, TypedRecords};
use crate::exec::task_context::TaskContext;
use serde::Serialize;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;

/// A record type with a borrowed view: what the borrowed operators
/// ([`FlatMapBorrowedFn`](crate::FlatMapBorrowedFn), [`MapBorrowedFn`](crate::MapBorrowedFn))
/// take and lend. `String` lends `&str`, `Vec<u8>` lends `&[u8]`, numbers lend themselves, a
/// pair lends a pair of views. A view must encode exactly as its owned record does (postcard),
/// which holds for these. For a type of your own, `type Borrowed<'a> = &'a Self` does.
pub trait Borrowable: Data {
    /// The view of one record, valid while it is lent.
    type Borrowed<'a>: Copy + Serialize
    where
        Self: 'a;
    /// Views an owned record.
    fn borrow_record(&self) -> Self::Borrowed<'_>;
    /// Copies a view into an owned record.
    fn to_owned_record(view: Self::Borrowed<'_>) -> Self;
    /// The view as a combining shuffle's key, when it is one of the keys looked up without
    /// copying (`String`, `u64`, `i64`, `u32`, `i32`).
    #[doc(hidden)]
    fn key_view<'a>(_view: Self::Borrowed<'a>) -> Option<KeyView<'a>> {
        None
    }
    /// For a `(key, value)` pair with a fast-path key: calls `f` with the key's view and the
    /// value, owned, in an `Option` to take. `None` for other records.
    #[doc(hidden)]
    fn with_pair<'a>(_view: Self::Borrowed<'a>, _f: &mut PairFn<'_, 'a>) -> Option<Outcome> {
        None
    }
}

#[doc(hidden)]
pub type Outcome = Result<(), TaskFailure>;

/// Receives a pair: its key's view and its value (an `Option<V>` to take).
#[doc(hidden)]
pub type PairFn<'f, 'a> = dyn FnMut(KeyView<'a>, &mut dyn Any) -> Outcome + 'f;

/// A key lent to a combining shuffle: the fast-path key types, borrowed.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum KeyView<'a> {
    Str(&'a str),
    U64(u64),
    I64(i64),
    U32(u32),
    I32(i32),
}

impl Borrowable for String {
    type Borrowed<'a> = &'a str;
    fn borrow_record(&self) -> &str {
        self
    }
    fn to_owned_record(view: &str) -> String {
        view.to_owned()
    }
    fn key_view<'a>(view: Self::Borrowed<'a>) -> Option<KeyView<'a>> {
        Some(KeyView::Str(view))
    }
}

impl Borrowable for Vec<u8> {
    type Borrowed<'a> = &'a [u8];
    fn borrow_record(&self) -> &[u8] {
        self
    }
    fn to_owned_record(view: &[u8]) -> Vec<u8> {
        view.to_vec()
    }
}

macro_rules! borrowable_by_value {
    ($($t:ty $(=> $view:ident)?),*) => {$(
        impl Borrowable for $t {
            type Borrowed<'a> = $t;
            fn borrow_record(&self) -> $t {
                *self
            }
            fn to_owned_record(view: $t) -> $t {
                view
            }
            $(fn key_view<'a>(view: $t) -> Option<KeyView<'a>> {
                Some(KeyView::$view(view))
            })?
        }
    )*};
}
borrowable_by_value!(u64 => U64, i64 => I64, u32 => U32, i32 => I32, u8, u16, i8, i16, usize, isize, f32, f64, bool, char);

impl<A: Borrowable, B: Borrowable> Borrowable for (A, B) {
    type Borrowed<'a> = (A::Borrowed<'a>, B::Borrowed<'a>);
    fn borrow_record(&self) -> Self::Borrowed<'_> {
        (self.0.borrow_record(), self.1.borrow_record())
    }
    fn to_owned_record((a, b): Self::Borrowed<'_>) -> Self {
        (A::to_owned_record(a), B::to_owned_record(b))
    }
    fn with_pair<'a>((a, b): Self::Borrowed<'a>, f: &mut PairFn<'_, 'a>) -> Option<Outcome> {
        let key = A::key_view(a)?;
        Some(f(key, &mut Some(B::to_owned_record(b))))
    }
}

/// A lending function: gets each record lent, while the call lasts.
pub(crate) type Lend<'f, R> = dyn for<'a> FnMut(<R as Borrowable>::Borrowed<'a>) + 'f;

/// A partition's records, lent.
pub(crate) trait LentSource<R: Borrowable>: Send {
    /// Lends the records made from the next input unit to `f`; false once there are no more.
    fn step(&mut self, f: &mut Lend<'_, R>) -> bool;
}

/// Lends the records of an owned iterator.
struct OwnedSource<R>(BoxIter<R>);

impl<R: Borrowable> LentSource<R> for OwnedSource<R> {
    fn step(&mut self, f: &mut Lend<'_, R>) -> bool {
        match self.0.next() {
            Some(r) => {
                f(r.borrow_record());
                true
            }
            None => false,
        }
    }
}

/// A typed stream of lent records, as [`Records::Lent`] carries it.
pub(crate) struct LentIter<R: Borrowable>(pub Box<dyn LentSource<R>>);

/// Wraps a lent stream.
pub(crate) fn lent<R: Borrowable>(source: impl LentSource<R> + 'static) -> Records {
    Records::Lent(Box::new(LentIter::<R>(Box::new(source))))
}

/// Turns records into a lent stream of `R`: lent records pass as they are, owned or encoded
/// ones are lent from their (decoded) owned values.
pub(crate) fn into_lent<R: Borrowable>(
    records: Records,
    tc: &Arc<TaskContext>,
) -> Result<Box<dyn LentSource<R>>, TaskFailure> {
    match records {
        Records::Lent(l) => {
            let found = l.type_name();
            match l.into_any().downcast::<LentIter<R>>() {
                Ok(it) => Ok(it.0),
                Err(_) => Err(TaskFailure::plan(format!(
                    "record type mismatch: an operator expects {} but its input lends {found}",
                    std::any::type_name::<R>()
                ))),
            }
        }
        other => Ok(Box::new(OwnedSource(stream::into_typed::<R>(other, tc)?))),
    }
}

/// The operations on a lent stream that need its record type.
#[doc(hidden)]
pub trait LentRecords: Send {
    fn type_name(&self) -> &'static str;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
    /// The same records, owned: each copied once, one input unit at a time.
    fn into_owned(self: Box<Self>) -> Box<dyn TypedRecords>;
    /// Encodes each record into a reused buffer and hands it to `f`.
    fn for_each_encoded(
        self: Box<Self>,
        f: &mut dyn FnMut(&[u8]) -> Result<(), TaskFailure>,
    ) -> Result<(), TaskFailure>;
    /// Hands each `(key, value)` record to `f` as its key's view and its value (an
    /// `Option<V>` to take); fails for records that are not pairs with a fast-path key.
    fn for_each_pair(
        self: Box<Self>,
        f: &mut dyn for<'a> FnMut(KeyView<'a>, &mut dyn Any) -> Outcome,
    ) -> Outcome;
    fn count(self: Box<Self>) -> u64;
}

/// Steps `source` to its end, handing each record to `f`; stops at `f`'s first error. `f` is
/// generic, so it is compiled into the one closure the source calls: a record costs one
/// indirect call here, whatever `f` does.
pub(crate) fn try_for_each<R: Borrowable>(
    source: &mut dyn LentSource<R>,
    mut f: impl for<'a> FnMut(R::Borrowed<'a>) -> Outcome,
) -> Outcome {
    let mut failed = None;
    loop {
        let more = source.step(&mut |r| {
            if failed.is_none() {
                if let Err(e) = f(r) {
                    failed = Some(e);
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if !more {
            return Ok(());
        }
    }
}

struct OwnedIter<R: Borrowable> {
    source: Box<dyn LentSource<R>>,
    unit: VecDeque<R>,
    done: bool,
}

impl<R: Borrowable> Iterator for OwnedIter<R> {
    type Item = R;
    fn next(&mut self) -> Option<R> {
        loop {
            if let Some(r) = self.unit.pop_front() {
                return Some(r);
            }
            if self.done {
                return None;
            }
            let unit = &mut self.unit;
            self.done = !self
                .source
                .step(&mut |r| unit.push_back(R::to_owned_record(r)));
        }
    }
}

impl<R: Borrowable> LentRecords for LentIter<R> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<R>()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }

    fn into_owned(self: Box<Self>) -> Box<dyn TypedRecords> {
        Box::new(TypedIter::<R>(Box::new(OwnedIter {
            source: self.0,
            unit: VecDeque::new(),
            done: false,
        })))
    }

    fn for_each_encoded(
        self: Box<Self>,
        f: &mut dyn FnMut(&[u8]) -> Result<(), TaskFailure>,
    ) -> Result<(), TaskFailure> {
        let mut buf = Vec::new();
        let mut source = self.0;
        try_for_each(&mut *source, |r| {
            buf.clear();
            codec::encode_into(&r, &mut buf)?;
            f(&buf)
        })
    }

    fn for_each_pair(
        self: Box<Self>,
        f: &mut dyn for<'a> FnMut(KeyView<'a>, &mut dyn Any) -> Outcome,
    ) -> Outcome {
        let mut source = self.0;
        try_for_each(&mut *source, |r| {
            R::with_pair(r, f).unwrap_or_else(|| {
                Err(TaskFailure::plan(format!(
                    "{} records are not pairs with a fast-path key",
                    std::any::type_name::<R>()
                )))
            })
        })
    }

    fn count(self: Box<Self>) -> u64 {
        let mut n = 0u64;
        let mut source = self.0;
        while source.step(&mut |_| n += 1) {}
        n
    }
}
