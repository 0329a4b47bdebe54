//! Many packages built for one architecture at once, as a build resolving a spec needs them:
//! the packages the cache lacks are found first, the `cargo` ones of one workspace and
//! profile are compiled by one cargo invocation (the standard library and the dependencies
//! they share compiled once), and the independent builds (each Debian, kernel or files
//! package, each cargo invocation, then each cargo package's image) run two at a time.
//!
//! Every package's image is the one it would get built alone: its tag hashes its own sources,
//! and each package's dependencies get the features that package asks for
//! ([`super::builder::cargo::compile`]). Every package is attempted whatever the others do, and
//! the results come back in the order asked, so a build fails the same way every time.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};

use super::builder::cargo::{self, Binaries, Crate, Unit};
use super::manifest::{Builder, CargoBuilder};
use super::{Package, Pending, PkgError, Status, builder, complete, status};
use crate::image::{Arch, Cache, Reference};
use crate::progress::Reporter;

/// How many builds run at once. Each is mostly a subprocess (cargo, which compiles on every
/// core itself, or mmdebstrap, which mostly waits on downloads), so two keep a small machine
/// busy without crowding it.
pub const WORKERS: usize = 2;

/// A piece of the batch.
enum Job<'a> {
    /// A package whose builder is not `cargo`: all of it.
    Whole(usize, Pending),
    /// One cargo invocation: the packages (by index) it compiles.
    Compile(Vec<(usize, Unit<'a>, Pending)>),
    /// A cargo package's image, once its binaries are there.
    Image(usize, Unit<'a>, Pending, Binaries),
}

/// Build every package of `packages` that `cache` lacks for `arch`, and name each; returns,
/// for each package in order, its reference pinned by the index digest or why it could not
/// be had. Each package reports its progress as `package DIR (ARCH)`, each cargo invocation
/// as `cargo IMAGES (ARCH)`.
pub fn build_all(
    packages: &[Package],
    cache: &Cache,
    mtime: i64,
    arch: Arch,
    reporter: &Reporter,
) -> Vec<Result<Reference, PkgError>> {
    let label = |i: usize| format!("package {} ({arch})", packages[i].dir.display());
    let mut results: Vec<Option<Result<Reference, PkgError>>> =
        packages.iter().map(|_| None).collect();
    // What each package lacks; the builder settings and crate of each cargo package.
    let mut pendings: Vec<Option<Pending>> = packages.iter().map(|_| None).collect();
    let mut crates: Vec<Option<(&CargoBuilder, Crate)>> = packages.iter().map(|_| None).collect();
    let mut wholes = Vec::new();
    for (i, package) in packages.iter().enumerate() {
        let pending = match status(package, cache, Some(arch)) {
            Ok(Status::Complete(reference)) => {
                reporter
                    .task(label(i), None)
                    .finish(format!("{reference} (in the cache)"));
                results[i] = Some(Ok(reference));
                continue;
            }
            Ok(Status::Pending(pending)) => pending,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        let checked = pending
            .missing
            .iter()
            .try_for_each(|a| builder::preflight(package, *a));
        let found = checked.and_then(|()| match &package.manifest.builder {
            Builder::Cargo(spec) => cargo::locate(package).map(|c| Some((spec, c))),
            _ => Ok(None),
        });
        match found {
            Ok(Some(found)) => {
                crates[i] = Some(found);
                pendings[i] = Some(pending);
            }
            Ok(None) => wholes.push(Job::Whole(i, pending)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let unit = |i: usize| -> Option<Unit<'_>> {
        let (spec, krate) = crates[i].as_ref()?;
        Some(Unit {
            package: &packages[i],
            spec,
            krate,
        })
    };
    // The cargo packages in groups that fit one invocation each, in the order given.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..packages.len() {
        let Some(me) = unit(i) else { continue };
        let fits = |group: &Vec<usize>| {
            group
                .iter()
                .all(|j| unit(*j).is_some_and(|other| me.fits_with(&other)))
        };
        match groups.iter_mut().find(|g| fits(g)) {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    let groups: Vec<Vec<(usize, Unit<'_>, Pending)>> = groups
        .into_iter()
        .map(|g| {
            g.into_iter()
                .filter_map(|i| Some((i, unit(i)?, pendings[i].take()?)))
                .collect()
        })
        .collect();
    // The long cargo invocations first, the other packages in the order given.
    let mut jobs: VecDeque<Job<'_>> = groups.into_iter().map(Job::Compile).collect();
    jobs.extend(wholes);
    let results = Mutex::new(results);
    let record = |i: usize, result: Result<Reference, PkgError>| {
        results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(result);
    };
    run(jobs, WORKERS, |job| match job {
        Job::Whole(i, pending) => {
            let package = &packages[i];
            let task = reporter.task(label(i), None);
            let result = complete(package, cache, pending, |a| {
                builder::root_filesystem(package, a, mtime)
            });
            finish(task, &result);
            record(i, result);
            Vec::new()
        }
        Job::Compile(group) => {
            let units: Vec<Unit<'_>> = group.iter().map(|(_, u, _)| *u).collect();
            let names: Vec<&str> = units
                .iter()
                .map(|u| u.package.manifest.image.value.as_str())
                .collect();
            let task = reporter.task(format!("cargo {} ({arch})", names.join(", ")), None);
            let compiled = cargo::compile(&units, arch);
            let built = compiled.iter().filter(|r| r.is_ok()).count();
            task.finish(format!("{built} of {} packages compiled", units.len()));
            let mut next = Vec::new();
            for ((i, u, pending), result) in group.into_iter().zip(compiled) {
                match result {
                    Ok(binaries) => next.push(Job::Image(i, u, pending, binaries)),
                    Err(e) => {
                        reporter.task(label(i), None).finish("failed");
                        record(i, Err(e));
                    }
                }
            }
            next
        }
        Job::Image(i, u, pending, binaries) => {
            let package = &packages[i];
            let task = reporter.task(label(i), None);
            let result = complete(package, cache, pending, |a| {
                cargo::assemble(package, u.spec, a, &binaries, mtime)
            });
            finish(task, &result);
            record(i, result);
            Vec::new()
        }
    });
    results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                Err(PkgError::Usage(format!(
                    "{}: the build never ended",
                    packages[i].dir.display()
                )))
            })
        })
        .collect()
}

/// End a package's task with its reference, or `failed` (the error is reported by the caller).
fn finish(task: crate::progress::Task, result: &Result<Reference, PkgError>) {
    match result {
        Ok(reference) => task.finish(reference.to_string()),
        Err(_) => task.finish("failed"),
    }
}

/// The jobs still queued and how many are running.
struct Queue<J> {
    jobs: VecDeque<J>,
    running: usize,
}

/// Run `jobs` on `workers` threads; a job may give further jobs, which join the queue. Returns
/// when every job is done.
fn run<J: Send>(jobs: VecDeque<J>, workers: usize, work: impl Fn(J) -> Vec<J> + Sync) {
    let queue = Mutex::new(Queue { jobs, running: 0 });
    let changed = Condvar::new();
    /// Counts a running job done (and wakes the waiting workers) however it ends, a panic
    /// included, so no worker waits for it forever.
    struct Running<'a, J> {
        queue: &'a Mutex<Queue<J>>,
        changed: &'a Condvar,
        more: Vec<J>,
    }
    impl<J> Drop for Running<'_, J> {
        fn drop(&mut self) {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.jobs.extend(self.more.drain(..));
            q.running -= 1;
            self.changed.notify_all();
        }
    }
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let job = {
                        let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
                        loop {
                            if let Some(job) = q.jobs.pop_front() {
                                q.running += 1;
                                break job;
                            }
                            if q.running == 0 {
                                return;
                            }
                            q = changed.wait(q).unwrap_or_else(PoisonError::into_inner);
                        }
                    };
                    let mut running = Running {
                        queue: &queue,
                        changed: &changed,
                        more: Vec::new(),
                    };
                    running.more = work(job);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn every_job_and_the_jobs_it_gives_run_once() {
        let done = Mutex::new(Vec::new());
        // Job n > 0 gives job n - 10 when that is positive.
        run((1..=25).collect(), WORKERS, |n: i32| {
            done.lock().unwrap().push(n);
            if n > 10 { vec![n - 10] } else { Vec::new() }
        });
        let mut done = done.into_inner().unwrap();
        done.sort();
        let mut expected: Vec<i32> = (1..=25).chain(1..=15).chain(1..=5).collect();
        expected.sort();
        assert_eq!(done, expected);
    }

    #[test]
    fn at_most_the_workers_run_at_once_and_they_do_overlap() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        run((0..6).collect(), 2, |_: u8| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            now.fetch_sub(1, Ordering::SeqCst);
            Vec::new()
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_job_given_late_still_runs_when_the_other_worker_is_idle() {
        // One job; when it ends it gives two more: the idle worker must wait for them rather
        // than leave.
        let count = AtomicUsize::new(0);
        run(VecDeque::from([0u8]), 2, |n| {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            if n == 0 { vec![1, 1] } else { Vec::new() }
        });
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }
}
