//! The link-time table of ops and key types. Filled by `register_op!` / `register_key!` through
//! `inventory`; read-only after start-up, so it is shared process state without being a mutable
//! singleton. Its hash is part of the build fingerprint: two processes with different tables
//! cannot exchange plans.

use super::erased::*;
use super::*;
use crate::core::key::{KeyCodec, KeyRegistration};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

type Dec<T> = fn(&[u8]) -> Result<T, TaskFailure>;

#[doc(hidden)]
pub enum Decoder {
    Map(Dec<Arc<dyn ErasedMap>>),
    FlatMap(Dec<Arc<dyn ErasedFlatMap>>),
    Filter(Dec<Arc<dyn ErasedFilter>>),
    Partitions(Dec<Arc<dyn ErasedPartitions>>),
    Zip(Dec<Arc<dyn ErasedZip>>),
    Agg(Dec<Arc<dyn ErasedAgg>>),
    Foreach(Dec<Arc<dyn ErasedForeach>>),
    Partitioner(Dec<Arc<dyn ErasedPartitioner>>),
    Narrow(Dec<Arc<dyn crate::exec::narrow::ErasedNarrow>>),
}

#[doc(hidden)]
pub struct OpRegistration {
    pub name: fn() -> &'static str,
    pub kind: OpKind,
    pub decode: Decoder,
}

inventory::collect!(OpRegistration);

fn dec<F: Op>(b: &[u8]) -> Result<Arc<F>, TaskFailure> {
    codec::decode::<F>(b).map(Arc::new)
}

fn map_dec<F: MapFn>(b: &[u8]) -> Result<Arc<dyn ErasedMap>, TaskFailure> {
    Ok(Arc::new(MapOp(dec::<F>(b)?)))
}
fn flat_map_dec<F: FlatMapFn>(b: &[u8]) -> Result<Arc<dyn ErasedFlatMap>, TaskFailure> {
    Ok(Arc::new(FlatMapOp(dec::<F>(b)?)))
}
fn filter_dec<F: FilterFn>(b: &[u8]) -> Result<Arc<dyn ErasedFilter>, TaskFailure> {
    Ok(Arc::new(FilterOp(dec::<F>(b)?)))
}
fn partitions_dec<F: PartitionFn>(b: &[u8]) -> Result<Arc<dyn ErasedPartitions>, TaskFailure> {
    Ok(Arc::new(PartitionsOp(dec::<F>(b)?)))
}
fn zip_dec<F: ZipFn>(b: &[u8]) -> Result<Arc<dyn ErasedZip>, TaskFailure> {
    Ok(Arc::new(ZipOp(dec::<F>(b)?)))
}
fn reduce_dec<F: ReduceFn>(b: &[u8]) -> Result<Arc<dyn ErasedAgg>, TaskFailure> {
    Ok(Arc::new(ReduceOp(dec::<F>(b)?)))
}
fn aggregate_dec<F: AggregateFn>(b: &[u8]) -> Result<Arc<dyn ErasedAgg>, TaskFailure> {
    Ok(Arc::new(AggregateOp(dec::<F>(b)?)))
}
fn combine_dec<F: CombineFn>(b: &[u8]) -> Result<Arc<dyn ErasedAgg>, TaskFailure> {
    Ok(Arc::new(CombineOp(dec::<F>(b)?)))
}
fn foreach_dec<F: ForeachFn>(b: &[u8]) -> Result<Arc<dyn ErasedForeach>, TaskFailure> {
    Ok(Arc::new(ForeachOp(dec::<F>(b)?)))
}
fn foreach_partition_dec<F: ForeachPartitionFn>(
    b: &[u8],
) -> Result<Arc<dyn ErasedForeach>, TaskFailure> {
    Ok(Arc::new(ForeachPartitionOp(dec::<F>(b)?)))
}
fn partitioner_dec<F: Partitioner>(b: &[u8]) -> Result<Arc<dyn ErasedPartitioner>, TaskFailure> {
    Ok(Arc::new(PartitionerOp(codec::decode::<F>(b)?)))
}

macro_rules! constructors {
    ($($fn_name:ident: $tr:ident => $kind:ident, $variant:ident($dec:ident);)*) => {
        impl OpRegistration {
            $(
                pub const fn $fn_name<F: $tr>() -> Self {
                    OpRegistration {
                        name: std::any::type_name::<F>,
                        kind: OpKind::$kind,
                        decode: Decoder::$variant($dec::<F>),
                    }
                }
            )*
        }
    };
}

constructors! {
    map: MapFn => Map, Map(map_dec);
    flat_map: FlatMapFn => FlatMap, FlatMap(flat_map_dec);
    filter: FilterFn => Filter, Filter(filter_dec);
    partitions: PartitionFn => Partitions, Partitions(partitions_dec);
    zip: ZipFn => Zip, Zip(zip_dec);
    reduce: ReduceFn => Reduce, Agg(reduce_dec);
    aggregate: AggregateFn => Aggregate, Agg(aggregate_dec);
    combine: CombineFn => Combine, Agg(combine_dec);
    foreach: ForeachFn => Foreach, Foreach(foreach_dec);
    foreach_partition: ForeachPartitionFn => ForeachPartition, Foreach(foreach_partition_dec);
    partitioner: Partitioner => Partitioner, Partitioner(partitioner_dec);
}

struct Registry {
    ops: HashMap<(OpKind, &'static str), &'static OpRegistration>,
    keys: HashMap<&'static str, &'static dyn KeyCodec>,
    fingerprint: u64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut ops = HashMap::new();
        for r in inventory::iter::<OpRegistration> {
            // The same type registered twice (say, by two crates) is harmless: same code.
            ops.insert((r.kind, (r.name)()), r);
        }
        let mut keys = HashMap::new();
        for k in inventory::iter::<KeyRegistration> {
            keys.insert((k.name)(), k.codec);
        }
        let mut names: Vec<String> = ops
            .keys()
            .map(|(k, n)| format!("{}:{n}", k.as_str()))
            .collect();
        names.extend(keys.keys().map(|n| format!("key:{n}")));
        names.sort();
        let fingerprint = codec::fnv1a(names.join("\n").as_bytes());
        Registry {
            ops,
            keys,
            fingerprint,
        }
    })
}

pub(crate) fn lookup(op: &OpRef) -> Result<&'static Decoder, TaskFailure> {
    registry()
        .ops
        .get(&(op.kind, op.name.as_str()))
        .map(|r| &r.decode)
        .ok_or_else(|| TaskFailure::UnknownOp {
            kind: op.kind.as_str().into(),
            name: op.name.clone(),
        })
}

pub(crate) fn lookup_key(name: &str) -> Result<&'static dyn KeyCodec, TaskFailure> {
    registry()
        .keys
        .get(name)
        .copied()
        .ok_or_else(|| TaskFailure::UnknownKeyType {
            name: name.to_string(),
        })
}

/// `discnn <version> (protocol <n>, registry <hash>)`: what a driver and an executor compare
/// before they trust each other's plans.
pub fn fingerprint() -> String {
    format!(
        "{} (protocol {}, registry {:016x})",
        env!("CARGO_PKG_VERSION"),
        discnn_proto::PROTOCOL_VERSION,
        registry().fingerprint
    )
}

/// Every registered op as `kind:name`, sorted.
pub fn registered_ops() -> Vec<String> {
    let mut v: Vec<String> = registry()
        .ops
        .keys()
        .map(|(k, n)| format!("{}:{n}", k.as_str()))
        .collect();
    v.sort();
    v
}

macro_rules! decoder_fns {
    ($($fn_name:ident: $variant:ident => $out:ty;)*) => {
        $(
            pub(crate) fn $fn_name(op: &OpRef) -> Result<$out, TaskFailure> {
                match lookup(op)? {
                    Decoder::$variant(d) => d(&op.bytes),
                    _ => Err(TaskFailure::UnknownOp { kind: op.kind.as_str().into(), name: op.name.clone() }),
                }
            }
        )*
    };
}

decoder_fns! {
    decode_map: Map => Arc<dyn ErasedMap>;
    decode_flat_map: FlatMap => Arc<dyn ErasedFlatMap>;
    decode_filter: Filter => Arc<dyn ErasedFilter>;
    decode_partitions: Partitions => Arc<dyn ErasedPartitions>;
    decode_zip: Zip => Arc<dyn ErasedZip>;
    decode_agg: Agg => Arc<dyn ErasedAgg>;
    decode_foreach: Foreach => Arc<dyn ErasedForeach>;
    decode_partitioner: Partitioner => Arc<dyn ErasedPartitioner>;
    decode_narrow: Narrow => Arc<dyn crate::exec::narrow::ErasedNarrow>;
}
