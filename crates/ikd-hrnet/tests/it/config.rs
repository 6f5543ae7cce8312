use ikd_hrnet::{BlockType, Error, HrNetConfig, CONFIG_NAMES};

use crate::common::{fixtures, tiny};

#[test]
fn named_configs_equal_timm_cfgs() {
    for name in CONFIG_NAMES {
        let from_json =
            HrNetConfig::from_json_file(fixtures().join(format!("{name}.json"))).unwrap();
        assert_eq!(HrNetConfig::by_name(name).unwrap(), from_json, "{name}");
    }
    assert_eq!(HrNetConfig::by_name("hrnet_w18_small").unwrap(), HrNetConfig::w18_small());
    assert_eq!(HrNetConfig::by_name("hrnet_w18_small_v2").unwrap(), HrNetConfig::w18_small_v2());
    assert_eq!(HrNetConfig::by_name("hrnet_w18").unwrap(), HrNetConfig::w18());
    assert_eq!(HrNetConfig::by_name("hrnet_w32").unwrap(), HrNetConfig::w32());
    assert_eq!(HrNetConfig::by_name("hrnet_w48").unwrap(), HrNetConfig::w48());
}

#[test]
fn tiny_config_parses() {
    let cfg = HrNetConfig::from_json_file(tiny().join("config.json")).unwrap();
    assert_eq!(cfg.stem_width, 16);
    assert_eq!(cfg.in_chans, 3);
    assert_eq!(cfg.stage1.block_type, BlockType::Bottleneck);
    assert_eq!(cfg.stage4.num_blocks, vec![2, 1, 1, 1]);
    assert_eq!(cfg.stage4.num_channels, vec![4, 8, 16, 32]);
}

#[test]
fn json_round_trip() {
    let cfg = HrNetConfig::w18_small_v2();
    let json = serde_json::to_string_pretty(&cfg).unwrap();
    assert!(json.contains("\"BOTTLENECK\"") && json.contains("\"SUM\""));
    assert_eq!(HrNetConfig::from_json_str(&json).unwrap(), cfg);
}

#[test]
fn bad_configs_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, "{\"stem_width\": 64}").unwrap();
    let err = HrNetConfig::from_json_file(&p).unwrap_err();
    assert!(matches!(err, Error::Json { .. }));
    assert!(err.to_string().contains("bad.json"), "{err}");

    let mut cfg = HrNetConfig::w32();
    cfg.stage2.num_channels = vec![32];
    std::fs::write(&p, serde_json::to_string(&cfg).unwrap()).unwrap();
    let err = HrNetConfig::from_json_file(&p).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("stage2"), "{err}");

    let mut cfg = HrNetConfig::w32();
    cfg.stage1.block_type = BlockType::Basic;
    cfg.stage3.block_type = BlockType::Bottleneck;
    assert!(cfg.validate().is_ok(), "any block type works in any stage");

    let err = HrNetConfig::from_json_file(dir.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"));
    let err = HrNetConfig::by_name("hrnet_w64").unwrap_err().to_string();
    assert!(err.contains("hrnet_w64") && err.contains("hrnet_w32"), "{err}");
}
