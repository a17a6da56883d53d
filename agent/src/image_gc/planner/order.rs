//! The order of the candidates: dangling first, then least recently used, then
//! largest (ID breaks ties), and every image after its candidate children, since
//! the engine refuses a parent while a child exists.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::image_gc::reason::ImageReason;
use crate::ports::docker::ImageInfo;

/// The unprotected images, in deletion order.
pub(super) fn candidates(
    images: &[ImageInfo],
    protection: &[Option<ImageReason>],
    last_used: &[DateTime<Utc>],
    by_id: &HashMap<&str, usize>,
) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..images.len())
        .filter(|&i| protection[i].is_none())
        .collect();
    candidates.sort_by_key(|&i| {
        (
            !images[i].repo_tags.is_empty(),
            last_used[i],
            Reverse(images[i].size),
            images[i].id.as_str(),
        )
    });
    children_first(images, &candidates, by_id)
}

/// Reorder `order` so that every image comes after its candidate children,
/// otherwise keeping the order.
fn children_first(
    images: &[ImageInfo],
    order: &[usize],
    by_id: &HashMap<&str, usize>,
) -> Vec<usize> {
    let in_set: HashSet<usize> = order.iter().copied().collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in order {
        if let Some(&p) = images[i].parent_id.as_deref().and_then(|p| by_id.get(p)) {
            if in_set.contains(&p) {
                children.entry(p).or_default().push(i);
            }
        }
    }
    if children.is_empty() {
        return order.to_vec();
    }
    let mut out = Vec::with_capacity(order.len());
    let mut done = HashSet::new();
    for &i in order {
        // Iterative post-order: emit descendants, then the image itself.
        let mut stack = vec![(i, false)];
        while let Some((node, expanded)) = stack.pop() {
            if done.contains(&node) {
                continue;
            }
            if expanded {
                done.insert(node);
                out.push(node);
            } else {
                stack.push((node, true));
                for &c in children.get(&node).into_iter().flatten().rev() {
                    if !done.contains(&c) {
                        stack.push((c, false));
                    }
                }
            }
        }
    }
    out
}
