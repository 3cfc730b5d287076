//! The compaction checks of a verify: each compacted readings file holds
//! exactly the rows of the files it names.

use super::*;

/// Check 7 of `schemas/AUDIT.md`, as files are verified: a compacted file
/// holds exactly the rows of its sources (readings files of its date, each
/// in the ledger and named once): the multiset of its row hashes equals the
/// union of theirs. A file's sorted row hashes are kept only until the last
/// compaction that needs them is compared, so memory follows what is
/// pending (a day or two of readings when compaction keeps up), not the
/// size of the data set.
pub(super) struct CompactionChecks<'a> {
    /// Per compaction: its entry, its sources, and how many of the files
    /// it needs (itself and its sources) have not been verified yet.
    compactions: Vec<(&'a LedgerEntry, Vec<String>, usize)>,
    /// Per file: the compactions that need it.
    needed_by: HashMap<&'a str, Vec<usize>>,
    /// Sorted row hashes of files verified and still needed (None: the file
    /// could not be read).
    kept: HashMap<String, Option<Vec<Hash>>>,
    pub(super) findings: Vec<Finding>,
    pub(super) checked: u64,
}

impl<'a> CompactionChecks<'a> {
    pub(super) fn new(data: &Path, entries: &'a [LedgerEntry], v: &mut Verification) -> Self {
        let tables: HashMap<&str, &str> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.table.as_str()))
            .collect();
        let mut c = CompactionChecks {
            compactions: Vec::new(),
            needed_by: HashMap::new(),
            kept: HashMap::new(),
            findings: Vec::new(),
            checked: 0,
        };
        for e in entries.iter().filter(|e| e.table == READINGS_COMPACTED) {
            let sources = match compact::footer_sources(&data.join(&e.path)) {
                Ok(s) => s,
                Err(err) => {
                    v.find(
                        &e.path,
                        format!("compacted file without its sources: {err}"),
                    );
                    continue;
                }
            };
            let date = compact::date_of(&e.path);
            let mut named = HashSet::new();
            let mut fine = true;
            for s in &sources {
                if !named.insert(s.as_str()) {
                    v.find(&e.path, format!("names source {s} twice"));
                    fine = false;
                }
                if tables.get(s.as_str()) != Some(&READINGS) {
                    v.find(
                        &e.path,
                        format!("source {s} is not a readings file in the ledger"),
                    );
                    fine = false;
                } else if compact::date_of(s) != date {
                    v.find(&e.path, format!("source {s} is of another date"));
                }
            }
            if !fine {
                v.find(&e.path, "cannot be compared with its sources (see above)");
                continue;
            }
            let k = c.compactions.len();
            let needs: Vec<&'a str> = std::iter::once(e.path.as_str())
                .chain(named.iter().map(|p| tables_key(&tables, p)))
                .collect();
            for p in &needs {
                c.needed_by.entry(p).or_default().push(k);
            }
            c.compactions.push((e, sources, needs.len()));
        }
        c
    }

    /// Whether `path`'s row hashes are needed.
    pub(super) fn wants(&self, path: &str) -> bool {
        self.needed_by.contains_key(path)
    }

    /// The sorted row hashes of a verified file that a compaction needs;
    /// compares every compaction that now has all it needs.
    pub(super) fn add(&mut self, path: &str, hashes: Option<Vec<Hash>>) {
        let Some(needers) = self.needed_by.get(path).cloned() else {
            return;
        };
        self.kept.insert(path.to_owned(), hashes);
        for k in needers {
            // (A path the ledger names twice is added twice: count once.)
            if self.compactions[k].2 == 0 {
                continue;
            }
            self.compactions[k].2 -= 1;
            if self.compactions[k].2 == 0 {
                self.compare(k);
            }
        }
    }

    pub(super) fn compare(&mut self, k: usize) {
        let (e, sources, _) = &self.compactions[k];
        self.checked += 1;
        let mut theirs: Vec<Hash> = Vec::new();
        let mut readable = true;
        for s in sources {
            match self.kept.get(s.as_str()) {
                Some(Some(h)) => theirs.extend_from_slice(h),
                _ => readable = false,
            }
        }
        let find = |what: String| Finding {
            subject: e.path.clone(),
            what,
        };
        match self.kept.get(e.path.as_str()) {
            Some(Some(ours)) if readable => {
                theirs.sort_unstable();
                let (extra, missing) = multiset_difference(ours, &theirs);
                if extra + missing > 0 {
                    self.findings.push(find(format!(
                        "does not hold exactly the rows of its {} sources: {extra} rows not in them, {missing} of theirs missing",
                        sources.len()
                    )));
                }
            }
            _ => self.findings.push(find(
                "cannot be compared with its sources: it or one of them is unreadable (see above)"
                    .into(),
            )),
        }
        // Release what no other compaction still needs.
        let paths: Vec<String> = std::iter::once(e.path.clone())
            .chain(sources.iter().cloned())
            .collect();
        for p in paths {
            let done = self
                .needed_by
                .get(p.as_str())
                .is_none_or(|ks| ks.iter().all(|&j| self.compactions[j].2 == 0));
            if done {
                self.kept.remove(&p);
            }
        }
    }
}

/// `p` as the `&'a str` of its ledger entry.
fn tables_key<'a>(tables: &HashMap<&'a str, &str>, p: &str) -> &'a str {
    tables.get_key_value(p).map(|(k, _)| *k).unwrap_or("")
}

/// Sizes of `a − b` and `b − a`, for sorted multisets.
fn multiset_difference(a: &[Hash], b: &[Hash]) -> (usize, usize) {
    let (mut i, mut j, mut only_a, mut only_b) = (0, 0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                only_a += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                only_b += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    (only_a + a.len() - i, only_b + b.len() - j)
}
