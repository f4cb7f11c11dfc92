//! AppArmor and SELinux labels (`process.apparmorProfile`, `process.selinuxLabel`,
//! `linux.mountLabel`): applied when the host runs that LSM, ignored with a debug note when it
//! does not — a host without AppArmor cannot confine by profile, and refusing the config would
//! break every engine that always sets a profile.

use std::path::Path;

/// What to write to the process's `attr/exec` before exec, per LSM that is enabled here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// `exec <profile>` for AppArmor.
    pub apparmor: Option<String>,
    /// The SELinux context of the process after exec.
    pub selinux: Option<String>,
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether SELinux is enabled on this host (selinuxfs is mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

impl Labels {
    /// The labels of `spec` this host can apply, and notes on the ones it ignores.
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> (Self, Vec<String>) {
        let process = spec.process().as_ref();
        let apparmor = process.and_then(|p| p.apparmor_profile().clone());
        let selinux = process.and_then(|p| p.selinux_label().clone());
        let mount_label = spec.linux().as_ref().and_then(|l| l.mount_label().clone());
        Self::decide(
            apparmor.filter(|s| !s.is_empty()),
            selinux.filter(|s| !s.is_empty()),
            mount_label.filter(|s| !s.is_empty()),
            apparmor_enabled(),
            selinux_enabled(),
        )
    }

    fn decide(
        apparmor: Option<String>,
        selinux: Option<String>,
        mount_label: Option<String>,
        apparmor_on: bool,
        selinux_on: bool,
    ) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let mut labels = Self::default();
        match apparmor {
            Some(p) if apparmor_on => labels.apparmor = Some(p),
            Some(p) => notes.push(format!(
                "process.apparmorProfile {p:?} ignored: AppArmor is not enabled on this host"
            )),
            None => {}
        }
        match selinux {
            Some(l) if selinux_on => labels.selinux = Some(l),
            Some(l) => notes.push(format!(
                "process.selinuxLabel {l:?} ignored: SELinux is not enabled on this host"
            )),
            None => {}
        }
        if let Some(l) = mount_label {
            notes.push(if selinux_on {
                format!("linux.mountLabel {l:?} is not applied to mounts yet")
            } else {
                format!("linux.mountLabel {l:?} ignored: SELinux is not enabled on this host")
            });
        }
        (labels, notes)
    }

    /// Writes the labels for the next exec of the calling thread.
    pub fn apply(&self) -> Result<(), String> {
        if let Some(profile) = &self.apparmor {
            // The AppArmor-specific file first (stacked LSMs), then the shared one.
            let text = format!("exec {profile}");
            std::fs::write("/proc/thread-self/attr/apparmor/exec", &text)
                .or_else(|_| std::fs::write("/proc/thread-self/attr/exec", &text))
                .map_err(|e| format!("setting AppArmor profile {profile:?}: {e}"))?;
        }
        if let Some(label) = &self.selinux {
            std::fs::write("/proc/thread-self/attr/exec", label)
                .map_err(|e| format!("setting SELinux label {label:?}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Labels;

    #[test]
    fn labels_apply_only_where_the_lsm_runs() {
        let aa = Some("docker-default".to_string());
        let se = Some("system_u:system_r:container_t:s0".to_string());
        let (l, notes) = Labels::decide(aa.clone(), se.clone(), None, false, false);
        assert_eq!(l, Labels::default());
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("AppArmor is not enabled"), "{notes:?}");
        let (l, notes) = Labels::decide(aa.clone(), se.clone(), Some("x".into()), true, true);
        assert_eq!(l.apparmor, aa);
        assert_eq!(l.selinux, se);
        assert_eq!(
            notes,
            vec!["linux.mountLabel \"x\" is not applied to mounts yet"]
        );
    }
}
