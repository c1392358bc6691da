//! Every example validates in every environment it ships.

use crate::{cairn_env, repo_root};

#[test]
fn every_example_validates_in_every_environment() {
    let examples = repo_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        let dir_s = dir.to_str().unwrap().to_string();
        let mut envs: Vec<String> = std::fs::read_dir(dir.join("env"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some(e.path().file_stem()?.to_str()?.to_string()))
            .collect();
        envs.sort();
        if envs.is_empty() {
            envs.push("dev".into());
        }
        for env in envs {
            // Secrets that a real deployment takes from the environment.
            let vars = [("CAIRN_PARAM_API_TOKEN", "token-from-the-environment")];
            let out = cairn_env(&["validate", &dir_s, "-e", &env, "-o", "json"], &vars);
            assert_eq!(out.code, 0, "{dir_s} -e {env}:\n{}", out.stderr);
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} example environments found");
}
