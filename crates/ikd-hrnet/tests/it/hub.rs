use ikd_hrnet::{fetch_timm_weights_with, timm_repo_id, Error, HubOptions};

fn opts(dir: &std::path::Path, offline: bool) -> HubOptions {
    HubOptions { cache_dir: dir.to_path_buf(), offline, endpoint: None, progress: false }
}

#[test]
fn offline_and_not_cached_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_timm_weights_with("hrnet_w32", &opts(dir.path(), true)).unwrap_err();
    assert!(matches!(err, Error::HubOffline { .. }));
    let msg = err.to_string();
    assert!(msg.contains("timm/hrnet_w32.ms_in1k"), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE") && msg.contains("local"), "{msg}");
    // what a user can do, in the library's words: no command-line flag (none is `--weights`)
    assert!(msg.contains("teacher_weights setting") && !msg.contains("--"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn cached_file_is_found_without_network() {
    let dir = tempfile::tempdir().unwrap();
    // huggingface_hub's cache layout
    let repo = dir.path().join("models--timm--hrnet_w18_small.ms_in1k");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("model.safetensors"), b"weights").unwrap();
    for offline in [true, false] {
        // an unreachable endpoint proves that no request is made
        let mut o = opts(dir.path(), offline);
        o.endpoint = Some("http://127.0.0.1:9".into());
        let p = fetch_timm_weights_with("hrnet_w18_small", &o).unwrap();
        assert_eq!(p, snap.join("model.safetensors"));
    }
    // another model is not in the cache
    assert!(fetch_timm_weights_with("hrnet_w32", &opts(dir.path(), true)).is_err());
}

#[test]
fn online_failure_is_an_error_naming_the_repo() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), false);
    o.endpoint = Some("http://127.0.0.1:9".into()); // nothing listens on the discard port
    let msg = fetch_timm_weights_with("hrnet_w32", &o).unwrap_err().to_string();
    assert!(msg.contains("timm/hrnet_w32.ms_in1k") && msg.contains("local"), "{msg}");
}

#[test]
fn environment_is_read_like_huggingface_hub() {
    let o = HubOptions::from_vars(|k| match k {
        "HF_HOME" => Some("/x/hf".into()),
        "HF_HUB_OFFLINE" => Some("true".into()),
        "HF_ENDPOINT" => Some("https://mirror".into()),
        _ => None,
    });
    assert_eq!(o.cache_dir, std::path::PathBuf::from("/x/hf/hub"));
    assert!(o.offline);
    assert_eq!(o.endpoint.as_deref(), Some("https://mirror"));
    let o = HubOptions::from_vars(|k| match k {
        "HOME" => Some("/home/me".into()),
        "HF_HUB_OFFLINE" => Some("0".into()),
        _ => None,
    });
    assert_eq!(o.cache_dir, std::path::PathBuf::from("/home/me/.cache/huggingface/hub"));
    assert!(!o.offline);
    assert_eq!(timm_repo_id("timm/hrnet_w48"), "timm/hrnet_w48.ms_in1k");
}
