//! Unit tests of the repository's open path.

use super::*;

#[test]
fn key_files_are_tried_known_first_then_cheapest_first() {
    let cheap = KdfParams::insecure_for_tests();
    let default = KdfParams::default();
    let planted = KdfParams {
        memory_kib: crate::format::keys::MAX_KDF_MEMORY_KIB,
        iterations: crate::format::keys::MAX_KDF_ITERATIONS,
        parallelism: 1,
    };
    let (a, b, c, d) = (
        KeyId([1; 32]),
        KeyId([2; 32]),
        KeyId([3; 32]),
        KeyId([4; 32]),
    );
    let known = [c, a];
    let mut files = [(a, default), (b, planted), (c, planted), (d, cheap)];
    files.sort_by_key(|(id, params)| try_rank(id, params, &known));
    let order: Vec<KeyId> = files.iter().map(|(id, _)| *id).collect();
    // The remembered ones in the order remembered, whatever their cost;
    // then the cheapest; the planted costly one last.
    assert_eq!(order, vec![c, a, d, b]);
}
