//! The conserver's own `config.yml` (`conserver.config_file`): chain names by link list, link
//! modules by link name. Tracer calls carry only the link list, not the chain's name.

use std::collections::HashMap;

/// Reads chain names and link modules from the conserver's `config.yml` (`chains:` and `links:`).
pub fn conserver_naming(text: &str) -> Result<(HashMap<Vec<String>, String>, HashMap<String, String>), String> {
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut chains = HashMap::new();
    let mut ambiguous = Vec::new();
    if let Some(map) = doc.get("chains").and_then(|c| c.as_object()) {
        for (name, chain) in map {
            let links: Vec<String> = chain
                .get("links")
                .and_then(|l| l.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if chains.insert(links.clone(), name.clone()).is_some() {
                ambiguous.push(links);
            }
        }
    }
    // Two chains with the same link list cannot be told apart from tracer calls alone.
    for l in ambiguous {
        chains.remove(&l);
    }
    let mut modules = HashMap::new();
    if let Some(map) = doc.get("links").and_then(|c| c.as_object()) {
        for (name, link) in map {
            if let Some(m) = link.get("module").and_then(|m| m.as_str()) {
                modules.insert(name.clone(), m.to_string());
            }
        }
    }
    Ok((chains, modules))
}
