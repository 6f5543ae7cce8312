//! The command-line flag behind a library error: the libraries name the setting at fault and
//! its value (`invalid setting batch_size = 0`, "accept it (setting allow_missing_masks …)"),
//! never a flag; the `ikd` command says which of its flags sets it.

/// The setting at fault somewhere in an error's chain, where a library names one.
fn setting_of(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(|cause| {
        let engine = cause.downcast_ref::<ikd::Error>();
        let data = cause.downcast_ref::<ikd_data::DataError>().or(match engine {
            Some(ikd::Error::Data(d)) => Some(d),
            _ => None,
        });
        if let Some(d) = data {
            return d.setting();
        }
        let model = cause.downcast_ref::<ikd_hrnet::Error>().or(match engine {
            Some(ikd::Error::Model(m)) => Some(m),
            _ => None,
        });
        // The teacher's weights are not in the hub cache, or the hub cannot be reached.
        matches!(model, Some(ikd_hrnet::Error::HubOffline { .. } | ikd_hrnet::Error::Hub { .. }))
            .then_some("teacher_weights")
    })
}

/// `(flag: --x)` for an error whose setting has a flag of the `ikd` command (see
/// [`crate::error_line`]).
pub(crate) fn hint(e: &anyhow::Error) -> Option<String> {
    setting_of(e).map(|s| format!("(flag: {})", crate::flag_of(s)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_map_to_flags_through_the_engine_and_contexts() {
        let data = ikd_data::DataError::Setting {
            name: "image_size",
            value: "0".into(),
            reason: "must be at least 1".into(),
        };
        let e = anyhow::Error::new(ikd::Error::Data(data)).context("training carpet");
        assert!(
            crate::error_line(&e).ends_with("(flag: --image-size)"),
            "{}",
            crate::error_line(&e)
        );

        let hub = ikd_hrnet::Error::HubOffline {
            repo: "timm/hrnet_w32.ms_in1k".into(),
            file: "model.safetensors".into(),
            cache_dir: "/cache/hub".into(),
        };
        let e = anyhow::Error::new(ikd::Error::Model(hub)).context("loading the teacher");
        let line = crate::error_line(&e);
        assert!(line.contains("the teacher_weights setting"), "{line}");
        assert!(line.ends_with("(flag: --teacher-weights)"), "{line}");

        // an error without a setting gets no hint
        let e = anyhow::Error::new(ikd_data::DataError::EmptyTrain { path: "x".into() });
        assert!(!crate::error_line(&e).contains("flag"));
    }
}
