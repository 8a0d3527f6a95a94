//! `palisade rules`: the CN2 translation (`cn2::tables`) as the text tables of the
//! CN2 documentation: Tags, Address Groups, Firewall Rules, Firewall Policy, then the
//! implicit default-deny of isolated pods, which that documentation does not tabulate.

use super::table::Table;
use crate::cn2::Cn2Tables;

/// The five tables, in print order.
pub fn rules_tables(t: &Cn2Tables) -> Vec<Table> {
    let mut tags = Table::new("Tags", &["Key", "Value"]);
    for tag in &t.tags {
        tags.push(vec![tag.key.clone(), tag.value.clone()]);
    }
    let mut groups = Table::new("Address Groups", &["Name", "Prefix"]);
    for g in &t.address_groups {
        groups.push(vec![g.name.clone(), g.prefix.clone()]);
    }
    let mut rules = Table::new(
        "Firewall Rules",
        &["Rule Name", "Action", "Service", "Endpoint1", "Direction", "Endpoint2"],
    );
    for r in &t.rules {
        rules.push(vec![
            r.name.clone(),
            r.action.to_string(),
            r.service.clone(),
            r.endpoint1.clone(),
            r.direction.to_string(),
            r.endpoint2.clone(),
        ]);
    }
    let mut policies = Table::new("Firewall Policy", &["Name", "Rules"]);
    for p in &t.policies {
        policies.push(vec![p.name.clone(), p.rules.join(", ")]);
    }
    let mut isolation = Table::new(
        "Default Deny (pods isolated by a policy; not in CN2's tables)",
        &["Rule Name", "Action", "Service", "Endpoint1", "Direction", "Endpoint2"],
    );
    for r in &t.isolation {
        isolation.push(vec![
            r.name.clone(),
            "deny".into(),
            "any".into(),
            r.endpoint1.clone(),
            r.direction.to_string(),
            "any".into(),
        ]);
    }
    vec![tags, groups, rules, policies, isolation]
}

/// All tables as text, separated by blank lines.
pub fn rules_text(t: &Cn2Tables) -> String {
    rules_tables(t).iter().map(Table::to_text).collect::<Vec<_>>().join("\n")
}
