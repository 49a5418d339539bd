use llmopt_core::{MemoryExperimentStore, MemoryPolicyStore, MemoryRecordStore, testsuite};

#[test]
fn memory_record_store_conforms() {
    testsuite::record_store_suite(&MemoryRecordStore::new());
}

#[test]
fn memory_experiment_store_conforms() {
    testsuite::experiment_store_suite(&MemoryExperimentStore::new());
}

#[test]
fn memory_policy_store_conforms() {
    testsuite::policy_store_suite(&MemoryPolicyStore::new());
}

#[test]
fn memory_key_store_conforms() {
    testsuite::key_store_suite(&llmopt_core::MemoryKeyStore::new());
}
