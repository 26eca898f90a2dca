//! The map-side combine table over typed `(K, V)` records, for the fast-path key types
//! (`String`, `u64`, `i64`, `u32`, `i32`): owned records are combined before anything is
//! encoded, and lent ones (`exec::lent`) are looked up by their borrowed key, which is copied
//! only when the table first sees it.

use super::erased::{Merger, PairSink, TypedCombineTable};
use crate::core::codec;
use crate::core::error::TaskFailure;
use crate::core::key::Key;
use crate::exec::lent::{self, Borrowable, KeyView, LentIter, LentRecords, LentSource};
use rustc_hash::FxHashMap;
use std::any::Any;

/// A fast-path key type: found in a table by a lent key (its view, or its `KeyView`) without
/// copying it.
trait FastKey: Key + Borrowable {
    fn find<'m, C>(
        slots: &'m mut FxHashMap<Self, C>,
        key: KeyView<'_>,
    ) -> Result<Option<&'m mut C>, TaskFailure>;
    fn from_view(key: KeyView<'_>) -> Result<Self, TaskFailure>;
    fn find_borrowed<'m, C>(
        slots: &'m mut FxHashMap<Self, C>,
        key: Self::Borrowed<'_>,
    ) -> Option<&'m mut C>;
}

fn other_key<K>(key: KeyView<'_>) -> TaskFailure {
    TaskFailure::plan(format!(
        "a combine table keyed by {} got the key {key:?}",
        std::any::type_name::<K>()
    ))
}

impl FastKey for String {
    fn find<'m, C>(
        slots: &'m mut FxHashMap<String, C>,
        key: KeyView<'_>,
    ) -> Result<Option<&'m mut C>, TaskFailure> {
        match key {
            KeyView::Str(s) => Ok(slots.get_mut(s)),
            other => Err(other_key::<String>(other)),
        }
    }
    fn from_view(key: KeyView<'_>) -> Result<String, TaskFailure> {
        match key {
            KeyView::Str(s) => Ok(s.to_owned()),
            other => Err(other_key::<String>(other)),
        }
    }
    fn find_borrowed<'m, C>(slots: &'m mut FxHashMap<String, C>, key: &str) -> Option<&'m mut C> {
        slots.get_mut(key)
    }
}

macro_rules! fast_int_key {
    ($($t:ty => $view:ident),*) => {$(
        impl FastKey for $t {
            fn find<'m, C>(
                slots: &'m mut FxHashMap<$t, C>,
                key: KeyView<'_>,
            ) -> Result<Option<&'m mut C>, TaskFailure> {
                Ok(slots.get_mut(&Self::from_view(key)?))
            }
            fn from_view(key: KeyView<'_>) -> Result<$t, TaskFailure> {
                match key {
                    KeyView::$view(k) => Ok(k),
                    other => Err(other_key::<$t>(other)),
                }
            }
            fn find_borrowed<C>(slots: &mut FxHashMap<$t, C>, key: $t) -> Option<&mut C> {
                slots.get_mut(&key)
            }
        }
    )*};
}
fast_int_key!(u64 => U64, i64 => I64, u32 => U32, i32 => I32);

struct TypedTable<K, M: Merger> {
    merger: M,
    slots: FxHashMap<K, Option<M::C>>,
}

/// `value` as a `B`, when `A` is `B`. Both types are known where it is called, so the check
/// compiles to a constant.
fn cast<A: 'static, B: 'static>(value: A) -> Option<B> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

/// Merges `v` into a key's combiner (the slot is only empty while it is being merged).
fn merge_into<M: Merger>(merger: &M, slot: &mut Option<M::C>, v: M::V) -> Result<(), TaskFailure> {
    let old = slot
        .take()
        .ok_or_else(|| TaskFailure::plan("combine slot emptied"))?;
    *slot = Some(merger.merge_value(old, v));
    Ok(())
}

impl<K: FastKey, M: Merger> TypedTable<K, M> {
    fn merge(&mut self, key: K::Borrowed<'_>, v: M::V) -> Result<(), TaskFailure> {
        match K::find_borrowed(&mut self.slots, key) {
            Some(slot) => merge_into(&self.merger, slot, v)?,
            None => {
                let c = self.merger.create(v);
                self.slots.insert(K::to_owned_record(key), Some(c));
            }
        }
        Ok(())
    }

    /// Combines lent `(K, V)` pairs whose value type `V` is known here.
    fn consume_direct<V: Borrowable>(
        &mut self,
        mut source: Box<dyn LentSource<(K, V)>>,
    ) -> Result<(), TaskFailure> {
        lent::try_for_each(&mut *source, |(k, v)| {
            match cast::<V, M::V>(V::to_owned_record(v)) {
                Some(v) => self.merge(k, v),
                None => Err(TaskFailure::plan("a lent pair's value is of another type")),
            }
        })
    }
}

impl<K: FastKey, M: Merger> TypedCombineTable for TypedTable<K, M> {
    fn accepts(&self, record_type: &str) -> bool {
        record_type == std::any::type_name::<(K, M::V)>()
    }

    fn consume(&mut self, records: Box<dyn std::any::Any + Send>) -> Result<(), TaskFailure> {
        let it = records
            .downcast::<crate::exec::stream::TypedIter<(K, M::V)>>()
            .map_err(|_| TaskFailure::plan("typed combine got records of another type"))?;
        for (k, v) in it.0 {
            match self.slots.get_mut(&k) {
                Some(slot) => merge_into(&self.merger, slot, v)?,
                None => {
                    let c = self.merger.create(v);
                    self.slots.insert(k, Some(c));
                }
            }
        }
        Ok(())
    }

    fn consume_lent(&mut self, records: Box<dyn LentRecords>) -> Result<(), TaskFailure> {
        // The common value types are taken straight from the source, with no closure or
        // `dyn Any` between it and the table.
        macro_rules! direct {
            ($($v:ty),*) => {$(
                if records.type_name() == std::any::type_name::<(K, $v)>() {
                    if let Ok(it) = records.into_any().downcast::<LentIter<(K, $v)>>() {
                        return self.consume_direct::<$v>(it.0);
                    }
                    return Err(TaskFailure::plan("a lent stream changed type"));
                }
            )*};
        }
        direct!(u64, i64, f64);
        let (slots, merger) = (&mut self.slots, &self.merger);
        records.for_each_pair(&mut |key, value| {
            let v = value
                .downcast_mut::<Option<M::V>>()
                .and_then(Option::take)
                .ok_or_else(|| TaskFailure::plan("a lent pair's value is of another type"))?;
            match K::find(slots, key)? {
                Some(slot) => merge_into(merger, slot, v)?,
                None => {
                    slots.insert(K::from_view(key)?, Some(merger.create(v)));
                }
            }
            Ok(())
        })
    }

    fn drain(self: Box<Self>, emit: PairSink<'_>) -> Result<(), TaskFailure> {
        let (mut kb, mut cb) = (Vec::new(), Vec::new());
        for (k, c) in self.slots {
            let c = c.ok_or_else(|| TaskFailure::plan("combine slot emptied"))?;
            kb.clear();
            cb.clear();
            codec::encode_into(&k, &mut kb)?;
            codec::encode_into(&c, &mut cb)?;
            emit(&kb, &cb)?;
        }
        Ok(())
    }
}

/// The fast-path key types: a generic table per (key type, op) is compiled only for these.
pub(super) fn typed_table_for<M: Merger>(
    merger: M,
    key_type: &str,
) -> Option<Box<dyn TypedCombineTable>> {
    macro_rules! fast_path {
        ($($t:ty),*) => {$(
            if key_type == std::any::type_name::<$t>() {
                return Some(Box::new(TypedTable::<$t, M> { merger, slots: FxHashMap::default() }));
            }
        )*};
    }
    fast_path!(String, u64, i64, u32, i32);
    None
}
