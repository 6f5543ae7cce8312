//! HRNet configurations: timm's `cfg` dictionary as a plain, serde-deserialisable struct.
//!
//! The JSON format is the one timm uses for its `cfg_cls` entries (see
//! `timm/models/hrnet.py`): a `stem_width` and four stage dictionaries with `num_modules`,
//! `num_branches`, `block_type` (`"BASIC"` or `"BOTTLENECK"`), `num_blocks`, `num_channels` and
//! `fuse_method` (`"SUM"`). Unknown keys are ignored, so a timm cfg dump loads as is.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The residual block a stage is built from (timm's `block_types_dict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BlockType {
    /// Two 3×3 convolutions (expansion 1), timm's `BasicBlock`.
    Basic,
    /// 1×1 → 3×3 → 1×1 convolutions (expansion 4), timm's `Bottleneck`.
    Bottleneck,
}

impl BlockType {
    /// Ratio of a block's output channels to its `planes`.
    ///
    /// ```
    /// use ikd_hrnet::BlockType;
    /// assert_eq!(BlockType::Basic.expansion(), 1);
    /// assert_eq!(BlockType::Bottleneck.expansion(), 4);
    /// ```
    pub fn expansion(self) -> usize {
        match self {
            BlockType::Basic => 1,
            BlockType::Bottleneck => 4,
        }
    }
}

/// How the branches of a high-resolution module are fused. timm only knows `SUM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FuseMethod {
    /// Every branch is resampled to the target resolution and the results are summed.
    Sum,
}

/// One stage of the network (timm's `stageN` dictionary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Number of high-resolution modules stacked in the stage.
    pub num_modules: usize,
    /// Number of parallel branches (resolutions).
    pub num_branches: usize,
    /// Residual block used in every branch.
    pub block_type: BlockType,
    /// Blocks per branch, one entry per branch.
    pub num_blocks: Vec<usize>,
    /// Block width (`planes`) per branch; a branch outputs `num_channels[i] * expansion` channels.
    pub num_channels: Vec<usize>,
    /// How the branches are fused.
    pub fuse_method: FuseMethod,
}

impl StageConfig {
    /// A stage of `num_modules` modules of `BASIC` blocks with `SUM` fusion.
    ///
    /// ```
    /// use ikd_hrnet::StageConfig;
    /// let s = StageConfig::basic(1, &[2, 2], &[18, 36]);
    /// assert_eq!(s.num_branches, 2);
    /// ```
    pub fn basic(num_modules: usize, num_blocks: &[usize], num_channels: &[usize]) -> Self {
        Self {
            num_modules,
            num_branches: num_blocks.len(),
            block_type: BlockType::Basic,
            num_blocks: num_blocks.to_vec(),
            num_channels: num_channels.to_vec(),
            fuse_method: FuseMethod::Sum,
        }
    }

    /// The single-branch `BOTTLENECK` stage 1 of timm's configurations.
    ///
    /// ```
    /// use ikd_hrnet::{BlockType, StageConfig};
    /// let s = StageConfig::bottleneck(4, 64);
    /// assert_eq!(s.block_type, BlockType::Bottleneck);
    /// ```
    pub fn bottleneck(num_blocks: usize, num_channels: usize) -> Self {
        Self {
            num_modules: 1,
            num_branches: 1,
            block_type: BlockType::Bottleneck,
            num_blocks: vec![num_blocks],
            num_channels: vec![num_channels],
            fuse_method: FuseMethod::Sum,
        }
    }

    /// Output channels of each branch (`num_channels[i] * expansion`).
    ///
    /// ```
    /// use ikd_hrnet::StageConfig;
    /// assert_eq!(StageConfig::bottleneck(1, 32).out_channels(), vec![128]);
    /// ```
    pub fn out_channels(&self) -> Vec<usize> {
        self.num_channels.iter().map(|c| c * self.block_type.expansion()).collect()
    }
}

fn default_in_chans() -> usize {
    3
}

/// An HRNet configuration, timm's `cfg` dictionary (plus the number of input channels).
///
/// ```
/// use ikd_hrnet::HrNetConfig;
/// let cfg = HrNetConfig::w32();
/// assert_eq!(cfg.stage4.num_channels, vec![32, 64, 128, 256]);
/// assert_eq!(HrNetConfig::by_name("hrnet_w32").unwrap(), cfg);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HrNetConfig {
    /// Output channels of the first stem convolution (the second always outputs 64).
    pub stem_width: usize,
    /// Input image channels (not part of timm's cfg; defaults to 3).
    #[serde(default = "default_in_chans")]
    pub in_chans: usize,
    /// Stage 1: one branch (timm uses only its first entries).
    pub stage1: StageConfig,
    /// Stage 2.
    pub stage2: StageConfig,
    /// Stage 3.
    pub stage3: StageConfig,
    /// Stage 4; its branch outputs are the network's outputs.
    pub stage4: StageConfig,
}

/// Names accepted by [`HrNetConfig::by_name`].
pub const CONFIG_NAMES: [&str; 5] =
    ["hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w32", "hrnet_w48"];

impl HrNetConfig {
    fn standard(width: usize) -> Self {
        let w = width;
        Self {
            stem_width: 64,
            in_chans: 3,
            stage1: StageConfig::bottleneck(4, 64),
            stage2: StageConfig::basic(1, &[4, 4], &[w, 2 * w]),
            stage3: StageConfig::basic(4, &[4, 4, 4], &[w, 2 * w, 4 * w]),
            stage4: StageConfig::basic(3, &[4, 4, 4, 4], &[w, 2 * w, 4 * w, 8 * w]),
        }
    }

    /// timm's `hrnet_w18_small`.
    ///
    /// ```
    /// assert_eq!(ikd_hrnet::HrNetConfig::w18_small().stage4.num_channels[0], 16);
    /// ```
    pub fn w18_small() -> Self {
        Self {
            stem_width: 64,
            in_chans: 3,
            stage1: StageConfig::bottleneck(1, 32),
            stage2: StageConfig::basic(1, &[2, 2], &[16, 32]),
            stage3: StageConfig::basic(1, &[2, 2, 2], &[16, 32, 64]),
            stage4: StageConfig::basic(1, &[2, 2, 2, 2], &[16, 32, 64, 128]),
        }
    }

    /// timm's `hrnet_w18_small_v2`.
    ///
    /// ```
    /// assert_eq!(ikd_hrnet::HrNetConfig::w18_small_v2().stage3.num_modules, 3);
    /// ```
    pub fn w18_small_v2() -> Self {
        Self {
            stem_width: 64,
            in_chans: 3,
            stage1: StageConfig::bottleneck(2, 64),
            stage2: StageConfig::basic(1, &[2, 2], &[18, 36]),
            stage3: StageConfig::basic(3, &[2, 2, 2], &[18, 36, 72]),
            stage4: StageConfig::basic(2, &[2, 2, 2, 2], &[18, 36, 72, 144]),
        }
    }

    /// timm's `hrnet_w18`.
    ///
    /// ```
    /// assert_eq!(ikd_hrnet::HrNetConfig::w18().stage4.num_channels[3], 144);
    /// ```
    pub fn w18() -> Self {
        Self::standard(18)
    }

    /// timm's `hrnet_w32`, the network of the IKD paper.
    ///
    /// ```
    /// assert_eq!(ikd_hrnet::HrNetConfig::w32().stage4.num_channels[0], 32);
    /// ```
    pub fn w32() -> Self {
        Self::standard(32)
    }

    /// timm's `hrnet_w48`.
    ///
    /// ```
    /// assert_eq!(ikd_hrnet::HrNetConfig::w48().stage4.num_channels[0], 48);
    /// ```
    pub fn w48() -> Self {
        Self::standard(48)
    }

    /// A built-in configuration by timm's model name (see [`CONFIG_NAMES`]); a `.tag` suffix
    /// such as `.ms_in1k` is ignored.
    ///
    /// ```
    /// use ikd_hrnet::HrNetConfig;
    /// assert_eq!(HrNetConfig::by_name("hrnet_w18.ms_in1k").unwrap(), HrNetConfig::w18());
    /// assert!(HrNetConfig::by_name("resnet50").is_err());
    /// ```
    pub fn by_name(name: &str) -> Result<Self> {
        let base = name.trim().split('.').next().unwrap_or_default();
        match base {
            "hrnet_w18_small" => Ok(Self::w18_small()),
            "hrnet_w18_small_v2" => Ok(Self::w18_small_v2()),
            "hrnet_w18" => Ok(Self::w18()),
            "hrnet_w32" => Ok(Self::w32()),
            "hrnet_w48" => Ok(Self::w48()),
            _ => {
                Err(Error::UnknownConfig { name: name.to_string(), known: CONFIG_NAMES.join(", ") })
            }
        }
    }

    /// Parses a configuration from JSON: either timm's cfg dictionary itself or an object
    /// holding it under `"cfg"` (the format of the project's `hrnet/<name>.json` fixtures).
    /// The result is validated ([`HrNetConfig::validate`]).
    ///
    /// ```
    /// use ikd_hrnet::HrNetConfig;
    /// let json = serde_json::to_string(&HrNetConfig::w18_small()).unwrap();
    /// assert_eq!(HrNetConfig::from_json_str(&json).unwrap(), HrNetConfig::w18_small());
    /// let wrapped = format!("{{\"cfg\": {json}, \"tensors\": {{}}}}");
    /// assert_eq!(HrNetConfig::from_json_str(&wrapped).unwrap(), HrNetConfig::w18_small());
    /// ```
    pub fn from_json_str(json: &str) -> Result<Self> {
        Self::parse(json, "<string>")
    }

    /// Reads a configuration from a JSON file (see [`HrNetConfig::from_json_str`]).
    ///
    /// ```
    /// use ikd_hrnet::HrNetConfig;
    /// let dir = std::env::temp_dir().join(format!("ikd-hrnet-doc-cfg-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("config.json");
    /// std::fs::write(&path, serde_json::to_string(&HrNetConfig::w32()).unwrap()).unwrap();
    /// assert_eq!(HrNetConfig::from_json_file(&path).unwrap(), HrNetConfig::w32());
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<Self> {
        let json_err = |source| Error::Json { origin: origin.to_string(), source };
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
        if let Some(cfg) = value.get_mut("cfg") {
            value = cfg.take();
        }
        let cfg: Self = serde_json::from_value(value).map_err(json_err)?;
        cfg.validate().map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{origin}: {msg}")),
            other => other,
        })?;
        Ok(cfg)
    }

    /// The four stages in order.
    ///
    /// ```
    /// assert_eq!(ikd_hrnet::HrNetConfig::w32().stages()[3].num_branches, 4);
    /// ```
    pub fn stages(&self) -> [&StageConfig; 4] {
        [&self.stage1, &self.stage2, &self.stage3, &self.stage4]
    }

    /// Checks that the configuration describes a buildable network: positive widths and counts,
    /// list lengths equal to `num_branches`, one branch in stage 1, stage 1 block count/width
    /// present, and branch counts that never shrink from one stage to the next.
    ///
    /// ```
    /// let mut cfg = ikd_hrnet::HrNetConfig::w32();
    /// assert!(cfg.validate().is_ok());
    /// cfg.stage3.num_blocks.pop();
    /// assert!(cfg.validate().unwrap_err().to_string().contains("stage3"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.stem_width == 0 || self.in_chans == 0 {
            return bad("stem_width and in_chans must be positive".into());
        }
        let mut prev_branches = 1;
        for (k, s) in self.stages().iter().enumerate() {
            let name = format!("stage{}", k + 1);
            if s.num_modules == 0 || s.num_branches == 0 {
                return bad(format!("{name}: num_modules and num_branches must be positive"));
            }
            if s.num_blocks.len() != s.num_branches || s.num_channels.len() != s.num_branches {
                return bad(format!(
                    "{name}: num_branches is {} but num_blocks has {} and num_channels {} entries",
                    s.num_branches,
                    s.num_blocks.len(),
                    s.num_channels.len()
                ));
            }
            if s.num_blocks.contains(&0) || s.num_channels.contains(&0) {
                return bad(format!("{name}: num_blocks and num_channels must be positive"));
            }
            if k == 0 && s.num_branches != 1 {
                return bad(format!("{name}: stage 1 has one branch, not {}", s.num_branches));
            }
            if s.num_branches < prev_branches {
                return bad(format!(
                    "{name}: {} branches after a stage with {prev_branches}",
                    s.num_branches
                ));
            }
            prev_branches = s.num_branches;
        }
        Ok(())
    }
}
