#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::RepoFile;
use lifeboat_engine::{BlobId, Tree};

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(&BlobId::default(), data) {
        // A valid tree re-encodes canonically and decodes to itself.
        let again = Tree::decode(&BlobId::default(), &tree.encode()).expect("round trip");
        assert_eq!(again, tree);
    }
});
