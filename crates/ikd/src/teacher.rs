//! Which teacher a run was trained with, recorded in the run as `teacher.json`.
//!
//! The scores of a run mean what its teacher allows: timm's ImageNet-pretrained HRNet is the
//! paper's teacher; a random one only shows that the pipeline runs. The identity names the
//! source and, for weights from a file or the hub, their SHA-256.

use std::path::{Path, PathBuf};

use crate::fsutil::{read_json, write_json};
use crate::{teacher_weights_file, Result, TeacherWeights};

/// Where a teacher's weights came from.
///
/// ```
/// let t = ikd::TeacherIdentity::Random { seed: 1 };
/// assert!(t.is_random());
/// assert!(t.describe().starts_with("random"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum TeacherIdentity {
    /// timm's published weights from the Hugging Face hub (or its cache).
    Hub {
        /// The hub repository, e.g. `timm/hrnet_w32.ms_in1k`.
        repo: String,
        /// The snapshot's commit, when the file sits in a hub cache's `snapshots/<rev>/`.
        revision: Option<String>,
        /// The file that was loaded.
        path: PathBuf,
        /// SHA-256 of that file, lowercase hex.
        sha256: String,
    },
    /// A timm-layout safetensors file given by the user.
    File {
        /// The file that was loaded.
        path: PathBuf,
        /// SHA-256 of that file, lowercase hex.
        sha256: String,
    },
    /// A seeded random initialisation: not a pretrained network.
    Random {
        /// The initialisation's seed.
        seed: u64,
    },
}

impl TeacherIdentity {
    /// Resolves `weights` for `backbone` (fetching timm's weights when asked for the hub, see
    /// [`teacher_weights_file`]) and hashes the file. `run_seed` is the run's seed, from which a
    /// random teacher's is derived as [`crate::Distiller::new`] does.
    ///
    /// ```
    /// use ikd::{TeacherIdentity, TeacherWeights};
    /// let t = TeacherIdentity::resolve("hrnet_w18_small", &TeacherWeights::Random, 0)?;
    /// assert_eq!(t, TeacherIdentity::Random { seed: 1 });
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn resolve(backbone: &str, weights: &TeacherWeights, run_seed: u64) -> Result<Self> {
        let Some(path) = teacher_weights_file(backbone, weights)? else {
            return Ok(Self::Random { seed: crate::distiller::teacher_seed(run_seed) });
        };
        let sha256 = ikd_data::sha256_file(&path, false)?;
        Ok(match weights {
            TeacherWeights::Hub => Self::Hub {
                repo: ikd_hrnet::timm_repo_id(backbone),
                revision: snapshot_revision(&path),
                path,
                sha256,
            },
            _ => Self::File { path, sha256 },
        })
    }

    /// The weights to build this teacher from: the file that was loaded, or the seeded
    /// initialisation (whose seed [`crate::Distiller::new`] derives from the run's).
    pub fn weights(&self) -> TeacherWeights {
        match self {
            Self::Hub { path, .. } | Self::File { path, .. } => TeacherWeights::File(path.clone()),
            Self::Random { .. } => TeacherWeights::Random,
        }
    }

    /// SHA-256 of the weights file, lowercase hex (`None` for a random teacher).
    pub fn sha256(&self) -> Option<&str> {
        match self {
            Self::Hub { sha256, .. } | Self::File { sha256, .. } => Some(sha256),
            Self::Random { .. } => None,
        }
    }

    /// Keeps the weights file in `run_dir` as [`files::TEACHER_WEIGHTS`](crate::files) — a
    /// hard link where the file system allows one, else a copy — so that the run can be
    /// rebuilt without the network, the Hugging Face cache or the original file. Nothing to
    /// keep for a random teacher.
    pub fn keep_in(&self, run_dir: &Path) -> Result<()> {
        let TeacherWeights::File(src) = self.weights() else { return Ok(()) };
        let dst = crate::RunDir::new(run_dir).teacher_weights();
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(&src, &dst).is_err() {
            ikd_io::atomic_copy(&src, &dst)?;
        }
        Ok(())
    }

    /// The teacher weights the run in `run_dir` is rebuilt with: the run's own copy of the file
    /// (checked against the SHA-256 in its `teacher.json`: a changed or corrupt copy is an error
    /// naming both) or the seeded initialisation; `None` for a run made before runs kept their
    /// teacher (it is rebuilt from its configuration).
    pub fn of_run(run_dir: &Path) -> Result<Option<TeacherWeights>> {
        let run = crate::RunDir::new(run_dir);
        let id_path = run.teacher();
        if !id_path.is_file() {
            return Ok(None);
        }
        let id = Self::load(&id_path)?;
        let Some(expected) = id.sha256() else { return Ok(Some(TeacherWeights::Random)) };
        let kept = run.teacher_weights();
        if !kept.is_file() {
            return Ok(None);
        }
        let found = ikd_data::sha256_file(&kept, false)?;
        if found != expected {
            return Err(crate::Error::bad_file(
                &kept,
                format!(
                    "SHA-256 {found}, but the run was trained with a teacher of SHA-256 {expected} \
                     ({}): the file was changed or is corrupt",
                    crate::files::TEACHER
                ),
            ));
        }
        Ok(Some(TeacherWeights::File(kept)))
    }

    /// Whether the teacher is a random initialisation.
    pub fn is_random(&self) -> bool {
        matches!(self, Self::Random { .. })
    }

    /// One line for people: the source and the weights' SHA-256.
    ///
    /// ```
    /// let t = ikd::TeacherIdentity::File { path: "w.safetensors".into(), sha256: "ab12".into() };
    /// assert_eq!(t.describe(), "file w.safetensors (SHA-256 ab12)");
    /// ```
    pub fn describe(&self) -> String {
        match self {
            Self::Hub { repo, revision, sha256, .. } => match revision {
                Some(rev) => format!("hub {repo} at revision {rev} (SHA-256 {sha256})"),
                None => format!("hub {repo} (SHA-256 {sha256})"),
            },
            Self::File { path, sha256 } => format!("file {} (SHA-256 {sha256})", path.display()),
            Self::Random { seed } => format!("random (seeded initialisation, seed {seed})"),
        }
    }

    /// Reads a run's `teacher.json`.
    pub fn load(path: &Path) -> Result<Self> {
        read_json(path, "a teacher identity")
    }

    /// Writes `teacher.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// The commit of a file in a hub cache's `snapshots/<rev>/` folder.
fn snapshot_revision(path: &Path) -> Option<String> {
    let snapshot = path.parent()?;
    (snapshot.parent()?.file_name()? == "snapshots")
        .then(|| snapshot.file_name()?.to_str().map(str::to_string))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_comes_from_the_snapshot_folder() {
        let p = Path::new("/hf/hub/models--timm--x/snapshots/0123abc/model.safetensors");
        assert_eq!(snapshot_revision(p).as_deref(), Some("0123abc"));
        assert_eq!(snapshot_revision(Path::new("/w/model.safetensors")), None);
    }

    #[test]
    fn identity_round_trips_through_json() {
        let t = TeacherIdentity::Hub {
            repo: "timm/hrnet_w32.ms_in1k".into(),
            revision: Some("0123".into()),
            path: "/hf/model.safetensors".into(),
            sha256: "ab".into(),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""source":"hub""#), "{json}");
        assert_eq!(serde_json::from_str::<TeacherIdentity>(&json).unwrap(), t);
    }
}
