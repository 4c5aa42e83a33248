//! The identities subsystem alone.
use super::*;
use seta_core::labels::Label;

fn labels(ls: &[&str]) -> LabelSet {
    ls.iter().map(|l| Label::parse(l, "k8s").unwrap()).collect()
}

#[test]
fn references_count_and_the_last_release_is_queued_once() {
    let mut ids = Identities::default();
    let web = labels(&["app=web"]);
    assert!(!ids.holds(&web));
    assert!(ids.holds(&LabelSet::new()), "no labels: reserved:init, always held");
    assert_eq!(ids.acquire_numbered(&web, 3000), 3000);
    assert!(ids.holds(&web));
    assert_eq!(ids.acquire_held(&web).unwrap(), 3000, "a second pod shares it");
    assert_eq!(ids.get(3000).unwrap().refcount, 2);
    assert_eq!(ids.release(&web), None, "one reference left");
    assert_eq!(ids.release(&web), Some(3000), "the last one");
    assert_eq!(ids.take_releases(), vec![3000]);
    assert!(ids.take_releases().is_empty(), "taken once");
}

#[test]
fn a_label_set_taken_again_before_its_release_keeps_its_reference() {
    let mut ids = Identities::default();
    let web = labels(&["app=web"]);
    ids.acquire_numbered(&web, 3000);
    ids.release(&web);
    // a new pod with the same labels before the release task ran
    assert_eq!(ids.acquire_numbered(&web, 3000), 3000);
    assert!(ids.take_releases().is_empty(), "the kvstore reference must stay");
    // a label set held meanwhile keeps its number
    assert_eq!(ids.acquire_numbered(&web, 3999), 3000);
}

#[test]
fn a_recount_keeps_numbers_of_live_endpoints_and_frees_the_rest() {
    let mut ids = Identities::default();
    let (web, gone) = (labels(&["app=web"]), labels(&["app=gone"]));
    ids.acquire_numbered(&web, 3000);
    ids.acquire_numbered(&gone, 3001);
    let json = serde_json::to_string(ids.local()).unwrap();
    let mut restarted = Identities::new(serde_json::from_str(&json).unwrap());
    restarted.start_recount();
    assert!(restarted.holds(&web), "numbers survive a restart");
    assert_eq!(
        restarted.acquire_held(&web).unwrap(),
        3000,
        "a live endpoint re-takes its reference"
    );
    restarted.finish_recount();
    assert!(!restarted.holds(&gone), "an identity no endpoint holds is freed");
    assert_eq!(restarted.get(3000).unwrap().refcount, 1);
}

#[test]
fn cluster_identities_churn_only_what_this_node_does_not_hold() {
    let mut ids = Identities::default();
    let web = labels(&["app=web"]);
    ids.acquire_numbered(&web, 3000);
    let c = ids.cluster_changed([(3000, Some(web.clone())), (3001, Some(labels(&["app=db"])))]);
    assert_eq!(
        c.added.iter().map(|i| i.id).collect::<Vec<_>>(),
        [3001],
        "ours is already in every policy"
    );
    assert!(c.removed.is_empty());
    assert!(
        ids.cluster_changed([(3001, Some(labels(&["app=db"])))]).is_empty(),
        "the same again: nothing"
    );
    // relabelled in the kvstore (a resync with other labels): out, then in
    let c = ids.cluster_changed([(3001, Some(labels(&["app=db2"])))]);
    assert_eq!((c.removed.clone(), c.added.len()), (vec![3001], 1));
    let mut sel: Vec<u32> = ids.selectable().iter().map(|(id, _)| *id).collect();
    sel.sort();
    assert_eq!(sel, [3000, 3001], "each identity once");
    assert!(ids.in_use(3001));
    let c = ids.cluster_changed([(3001, None), (3000, None)]);
    assert_eq!(c.removed, vec![3001], "ours stays selectable while held");
    assert!(!ids.in_use(3001) && ids.in_use(3000));
}
