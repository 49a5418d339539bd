//! Configuration layering, environment overrides, and `config check` output.

use figment::Jail;
use llmopt_gateway::config::{ConfigSource, ProviderKind};

#[test]
fn environment_variables_override_the_default_file() {
    Jail::expect_with(|jail| {
        jail.set_env("OPTIMIZER_PROVIDERS__OPENAI__BASE_URL", "http://127.0.0.1:9999/v1");
        jail.set_env("OPTIMIZER_SERVER__LISTEN", "127.0.0.1:18080");
        jail.set_env("OPTIMIZER_CACHE__ENABLED", "true");
        let config = ConfigSource { base_file: None, env_file: None }.load().expect("config");
        assert_eq!(
            config.providers["openai"].base_url.as_deref(),
            Some("http://127.0.0.1:9999/v1")
        );
        assert_eq!(config.providers["openai"].kind, ProviderKind::Openai);
        assert_eq!(config.server.listen.port(), 18080);
        assert!(config.cache.enabled);
        Ok(())
    });
}

#[test]
fn the_store_cache_size_is_configurable_and_bounded() {
    Jail::expect_with(|jail| {
        let source = ConfigSource { base_file: None, env_file: None };
        let config = source.load().expect("config");
        assert_eq!(config.storage.cache_mb, 2, "the documented default");
        assert_eq!(config.storage.storage_config().cache_bytes, 2 * 1024 * 1024);
        jail.set_env("OPTIMIZER_STORAGE__CACHE_MB", "64");
        assert_eq!(source.load().expect("config").storage.cache_mb, 64);
        jail.set_env("OPTIMIZER_STORAGE__CACHE_MB", "0");
        let error = source.load().unwrap_err().to_string();
        assert!(error.contains("storage.cache_mb must be between 1 and 65536 (got 0)"), "{error}");
        Ok(())
    });
}

#[test]
fn server_threads_default_to_one_per_core_and_are_bounded() {
    Jail::expect_with(|jail| {
        let source = ConfigSource { base_file: None, env_file: None };
        let config = source.load().expect("config");
        assert_eq!(config.server.threads, 0, "the documented default");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(llmopt_gateway::server::io_threads(config.server.threads), cores);
        jail.set_env("OPTIMIZER_SERVER__THREADS", "3");
        let config = source.load().expect("config");
        assert_eq!(llmopt_gateway::server::io_threads(config.server.threads), 3);
        jail.set_env("OPTIMIZER_SERVER__THREADS", "1025");
        let error = source.load().unwrap_err().to_string();
        assert!(error.contains("server.threads must be between 0"), "{error}");
        jail.set_env("OPTIMIZER_SERVER__THREADS", "-1");
        let error = source.load().unwrap_err().to_string().to_lowercase();
        assert!(error.contains("threads"), "{error}");
        Ok(())
    });
}

#[test]
fn environment_file_layers_over_the_base_and_typos_name_their_key() {
    Jail::expect_with(|jail| {
        jail.create_file("base.toml", "[server]\nlisten = \"127.0.0.1:1000\"\n")?;
        jail.create_file("staging.toml", "[server]\nlisten = \"127.0.0.1:2000\"\n")?;
        jail.set_env("OPTIMIZER_ENV", "staging");
        let source = ConfigSource::discover(Some(std::path::Path::new("base.toml")));
        assert_eq!(source.env_file.as_deref(), Some(std::path::Path::new("staging.toml")));
        assert_eq!(source.load().expect("config").server.listen.port(), 2000);
        jail.set_env("OPTIMIZER_SERVER__LISTN", "127.0.0.1:3000");
        let error = source.load().unwrap_err().to_string().to_lowercase();
        assert!(error.contains("server.listn"), "{error}");
        Ok(())
    });
}

#[test]
fn the_grpc_switch_needs_the_feature_and_keys_off_loopback() {
    use llmopt_gateway::{config::from_toml_str, server::check_exposure};
    let enabled = from_toml_str("[grpc]\nenabled = true\n");
    if cfg!(feature = "grpc") {
        let config = enabled.expect("a grpc build accepts the switch");
        assert_eq!(config.grpc.listen.to_string(), "127.0.0.1:50051", "loopback by default");
        check_exposure(&config).expect("loopback needs no keys");
        let open = from_toml_str("[grpc]\nenabled = true\nlisten = \"0.0.0.0:50051\"\n").unwrap();
        let refused = check_exposure(&open).unwrap_err().to_string();
        assert!(refused.contains("gRPC") && refused.contains("0.0.0.0:50051"), "{refused}");
    } else {
        let refused = enabled.unwrap_err().to_string();
        assert!(refused.contains("`grpc` feature"), "{refused}");
    }
}
