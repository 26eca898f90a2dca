//! CIFAR-10 input: synthetic record files, folders and archives, and (where this repository's
//! development layout has it) the real dataset.

use discnn_cnn::cifar::*;
use std::io::Write;
use std::path::Path;

fn records(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        v.extend((0..IMAGE_BYTES).map(|j| (j as u8).wrapping_mul(seed).wrapping_add(i as u8)));
    }
    v
}

fn write_folder(dir: &Path) {
    for i in 1..=5u8 {
        std::fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            records(&[i, 9 - i], i),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), records(&[0, 7, 3], 11)).unwrap();
    std::fs::write(dir.join("batches.meta.txt"), CLASSES.join("\n")).unwrap();
}

#[test]
fn records_parse_and_bad_records_name_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("recs.bin");
    std::fs::write(&f, records(&[1, 2, 3], 5)).unwrap();
    let imgs = read_record_file(&f).unwrap();
    assert_eq!(imgs.labels, vec![1, 2, 3]);
    assert_eq!(imgs.image(2)[10], (10u8).wrapping_mul(5).wrapping_add(2));

    let mut torn = records(&[1, 2, 3], 5);
    torn.truncate(torn.len() - 100);
    std::fs::write(&f, &torn).unwrap();
    let e = read_record_file(&f).unwrap_err().to_string();
    assert!(
        e.contains("recs.bin") && e.contains(&format!("offset {}", 2 * RECORD_BYTES)),
        "{e}"
    );

    let mut bad = records(&[1, 2, 3], 5);
    bad[RECORD_BYTES] = 10;
    std::fs::write(&f, &bad).unwrap();
    let e = read_record_file(&f).unwrap_err().to_string();
    assert!(
        e.contains("recs.bin")
            && e.contains(&format!("offset {RECORD_BYTES}"))
            && e.contains("label 10"),
        "{e}"
    );
}

#[test]
fn folders_and_streamed_archives_give_the_same_images() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&folder).unwrap();
    write_folder(&folder);
    let train = load(&folder, Split::Train).unwrap();
    assert_eq!(train.labels, vec![1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
    let test = load(&folder, Split::Test).unwrap();
    assert_eq!(test.labels, vec![0, 7, 3]);

    let archive = dir.path().join("cifar-10-binary.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&archive).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("cifar-10-batches-bin", &folder).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    assert_eq!(load(&archive, Split::Train).unwrap(), train);
    assert_eq!(load(&archive, Split::Test).unwrap(), test);

    let bytes = std::fs::read(&archive).unwrap();
    let broken = dir.path().join("broken.tar.gz");
    std::fs::File::create(&broken)
        .unwrap()
        .write_all(&bytes[..bytes.len() / 2])
        .unwrap();
    let e = load(&broken, Split::Train).unwrap_err().to_string();
    assert!(e.contains("broken.tar.gz"), "{e}");

    std::fs::remove_file(folder.join("data_batch_4.bin")).unwrap();
    let e = load(&folder, Split::Train).unwrap_err().to_string();
    assert!(e.contains("data_batch_4.bin"), "{e}");
}

#[test]
fn text_lines_round_trip_and_bad_lines_are_named() {
    let imgs = parse_records("mem", &records(&[4, 9], 3), 0).unwrap();
    for i in 0..imgs.len() {
        let line = to_text_line(&imgs, i);
        assert!(line.starts_with("(0,0,0,0,") && line.ends_with(')'));
        let (label, pixels) = from_text_line(&line, "line 1").unwrap();
        assert_eq!((label, pixels.as_slice()), (imgs.labels[i], imgs.image(i)));
    }
    let line = to_text_line(&imgs, 0).replacen("1,", "0,", 1);
    assert!(from_text_line(&line, "line 7")
        .unwrap_err()
        .contains("line 7"));
    assert!(from_text_line("(1,2)", "line 8")
        .unwrap_err()
        .contains("fields"));
}

#[test]
fn the_real_test_batch_is_balanced_and_normalizes() {
    let Some(dir) = shared_dataset() else {
        eprintln!("skipped: the CIFAR-10 folder of the development layout is not here");
        return;
    };
    let test = load(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    let mut per_class = [0usize; 10];
    test.labels.iter().for_each(|&l| per_class[l as usize] += 1);
    assert_eq!(per_class, [1000; 10]);
    assert_eq!(test.labels[0], 3, "the first test image is a cat");
    let (mean, std) = channel_stats(&test);
    for c in 0..3 {
        assert!(
            (0.40..0.55).contains(&mean[c]) && (0.2..0.3).contains(&std[c]),
            "{mean:?} {std:?}"
        );
    }
    let mut buf = vec![0f32; IMAGE_BYTES];
    normalized(&test, 0, &mean, &std, &mut buf);
    assert!(buf.iter().all(|v| v.is_finite() && v.abs() < 5.0));
    let line = to_text_line(&test, 0);
    assert_eq!(
        from_text_line(&line, "test_batch 0").unwrap().1,
        test.image(0)
    );
}

fn crafted_archive(claimed: u64, data: &[u8]) -> Vec<u8> {
    archive_claiming("test_batch.bin", claimed, data).unwrap()
}

/// Sizes read from input are checked before anything is allocated: a 6 KB archive whose header
/// claims 2^62 bytes once aborted the process (SIGABRT) reserving them.
#[test]
fn an_archive_header_claiming_more_than_a_batch_may_hold_is_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&f, crafted_archive(1 << 62, &[0u8; 6000])).unwrap();
    let err = load(&f, Split::Test).unwrap_err().to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("more than a batch file may hold"),
        "{err}"
    );
    // A 0-byte batch is not an empty batch.
    std::fs::write(&f, crafted_archive(0, &[])).unwrap();
    let err = load(&f, Split::Test).unwrap_err().to_string();
    assert!(err.contains("holds no records"), "{err}");
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    write_folder(&folder);
    std::fs::write(folder.join("data_batch_2.bin"), b"").unwrap();
    for r in [
        load(&folder, Split::Train).map(|i| i.len()),
        count(&folder, Split::Train),
        load_range(&folder, Split::Train, 0..10).map(|i| i.len()),
    ] {
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("data_batch_2.bin") && err.contains("no records"),
            "{err}"
        );
    }
}

mod untrusted_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        /// Any bytes as a record file: records or an error naming the file, never a panic.
        #[test]
        fn record_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
            match parse_records("f.bin", &bytes, 0) {
                Ok(i) => prop_assert_eq!(i.len() * RECORD_BYTES, bytes.len()),
                Err(e) => prop_assert!(e.to_string().starts_with("f.bin")),
            }
        }

        /// A valid archive with bytes flipped, cut or its header's size replaced: an error or
        /// images, never a panic or an allocation beyond the batch limit.
        #[test]
        fn mutated_archives_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            claimed in prop_oneof![Just(3 * RECORD_BYTES as u64), any::<u64>()],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("a.tar.gz");
            let mut bytes = crafted_archive(claimed.min(1 << 62), &records(&[1, 2, 3], 3));
            for (at, v) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= v;
            }
            let keep = bytes.len() - cut.index(bytes.len() / 4 + 1);
            bytes.truncate(keep);
            std::fs::write(&f, &bytes).unwrap();
            let _ = load(&f, Split::Test);
        }
    }
}
