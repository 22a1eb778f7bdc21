//! A tiny single-threaded executor for the wasm build, in plain Rust.
//!
//! Tasks live in a slab; a task's waker puts its index on a ready queue, and [`run`] polls ready
//! tasks until none is left. Results that the host (JS) delivers later arrive through a [`Waits`]
//! table: a future ([`Wait`]) polls its slot, the host [`Waits::fill`]s it, then calls [`run`].
//!
//! It replaces `wasm-bindgen-futures` (3.3 KB less wasm, measured): no JS closure per promise, no
//! microtask hop before a call's first request leaves.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread::LocalKey;

type Task = Pin<Box<dyn Future<Output = ()>>>;

enum Slot {
    Free,
    Parked(Task),
    /// Taken out by [`run`] for the duration of its poll.
    Polling,
}

/// The executor's state. One thread-local for all of it: every access to a thread-local is an
/// indirect call in the wasm (one thread-local, not three).
struct Executor {
    tasks: RefCell<Vec<Slot>>,
    /// Woken tasks, first woken first. A `Vec` used as a queue, not a `VecDeque`: it
    /// stays short (one task per host wake; the waiters of a token refresh).
    ready: RefCell<Vec<usize>>,
    running: Cell<bool>,
}

impl Executor {
    /// Takes the first woken task off the queue.
    fn next_ready(&self) -> Option<usize> {
        let mut ready = self.ready.borrow_mut();
        (!ready.is_empty()).then(|| ready.remove(0))
    }
}

thread_local! {
    static EXECUTOR: Executor = const {
        Executor {
            tasks: RefCell::new(Vec::new()),
            ready: RefCell::new(Vec::new()),
            running: Cell::new(false),
        }
    };
}

/// Starts `future` and polls it until its first wait. Called from inside a task's poll (a
/// callback that starts another call), the new task runs right after that poll instead.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    start(Box::pin(future));
}

/// [`spawn`] past the boxing: one copy for every kind of task, not one per future type.
#[inline(never)]
fn start(task: Task) {
    EXECUTOR.with(|executor| {
        let mut tasks = executor.tasks.borrow_mut();
        // The first free slot, or a new one (a loop, not `position`, here and in
        // `Waits::open`).
        let mut index = 0;
        while tasks.get(index).is_some_and(|s| !matches!(s, Slot::Free)) {
            index += 1;
        }
        if index == tasks.len() {
            tasks.push(Slot::Free);
        }
        tasks[index] = Slot::Parked(task);
        executor.ready.borrow_mut().push(index);
    });
    run();
}

/// Polls every ready task until none is left. Re-entrant calls return at once: the outer call
/// polls what they would have.
pub fn run() {
    EXECUTOR.with(|executor| {
        if executor.running.replace(true) {
            return;
        }
        while let Some(index) = executor.next_ready() {
            let task = {
                let mut tasks = executor.tasks.borrow_mut();
                // Only a parked task is taken out (a stale wake finds its slot free, or polling);
                // matched in place, not replaced and put back (with `fill`).
                let slot = &mut tasks[index];
                match slot {
                    Slot::Parked(_) => match std::mem::replace(slot, Slot::Polling) {
                        Slot::Parked(task) => Some(task),
                        _ => None,
                    },
                    _ => None,
                }
            };
            let Some(mut task) = task else { continue };
            let waker = waker(index);
            let done = task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            executor.tasks.borrow_mut()[index] = if done { Slot::Free } else { Slot::Parked(task) };
        }
        executor.running.set(false);
    });
}

fn wake_index(index: usize) {
    EXECUTOR.with(|executor| executor.ready.borrow_mut().push(index));
}

// A waker is the task's index: waking queues it; a stale one (task done, slot reused) only costs
// a spurious poll, which futures tolerate.
static VTABLE: RawWakerVTable = RawWakerVTable::new(
    |data| RawWaker::new(data, &VTABLE),
    |data| wake_index(data as usize),
    |data| wake_index(data as usize),
    |_| {},
);

fn waker(index: usize) -> Waker {
    // SAFETY: the vtable's functions only read the pointer as an integer; nothing is owned.
    unsafe { Waker::from_raw(RawWaker::new(index as *const (), &VTABLE)) }
}

/// Host results awaited by tasks: one slot per pending [`Wait`].
pub struct Waits<T> {
    slots: RefCell<Vec<WaitSlot<T>>>,
}

enum WaitSlot<T> {
    Free,
    Pending(Option<Waker>),
    Filled(T),
    /// Its [`Wait`] was dropped first: freed when the host fills it.
    Abandoned,
}

impl<T: 'static> Waits<T> {
    pub const fn new() -> Self {
        Waits {
            slots: RefCell::new(Vec::new()),
        }
    }

    /// Reserves a slot for a result the host will deliver with [`Waits::fill`].
    pub fn open(key: &'static LocalKey<Self>) -> Wait<T> {
        let slot = key.with(|w| {
            let mut slots = w.slots.borrow_mut();
            let mut slot = 0;
            while slots
                .get(slot)
                .is_some_and(|s| !matches!(s, WaitSlot::Free))
            {
                slot += 1;
            }
            if slot == slots.len() {
                slots.push(WaitSlot::Free);
            }
            slots[slot] = WaitSlot::Pending(None);
            slot
        });
        Wait {
            key,
            slot,
            done: false,
        }
    }

    /// Delivers the result for `slot` and wakes its task; the caller then calls [`run`].
    /// A slot that is not pending (a host bug) is ignored.
    pub fn fill(&self, slot: usize, value: T) {
        let mut slots = self.slots.borrow_mut();
        let Some(entry) = slots.get_mut(slot) else {
            return;
        };
        // Matched in place: only a pending slot changes, and an abandoned one is freed.
        match entry {
            WaitSlot::Pending(waker) => {
                let waker = waker.take();
                *entry = WaitSlot::Filled(value);
                drop(slots);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            WaitSlot::Abandoned => *entry = WaitSlot::Free,
            _ => {}
        }
    }

    /// Slots in use (pending, filled or abandoned).
    #[cfg(test)]
    fn in_use(&self) -> usize {
        let slots = self.slots.borrow();
        slots
            .iter()
            .filter(|s| !matches!(s, WaitSlot::Free))
            .count()
    }
}

impl<T: 'static> Default for Waits<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A result the host delivers later; see [`Waits::open`].
pub struct Wait<T: 'static> {
    key: &'static LocalKey<Waits<T>>,
    slot: usize,
    done: bool,
}

impl<T: 'static> Wait<T> {
    /// The slot number to hand to the host.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl<T: 'static> Future for Wait<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let slot = self.slot;
        let ready = self.key.with(|w| {
            let mut slots = w.slots.borrow_mut();
            let entry = &mut slots[slot];
            match std::mem::replace(entry, WaitSlot::Free) {
                WaitSlot::Filled(value) => Some(value),
                _ => {
                    *entry = WaitSlot::Pending(Some(cx.waker().clone()));
                    None
                }
            }
        });
        match ready {
            Some(value) => {
                self.done = true;
                Poll::Ready(value)
            }
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for Wait<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let slot = self.slot;
        self.key.with(|w| {
            let mut slots = w.slots.borrow_mut();
            let entry = &mut slots[slot];
            // A look at the slot, not a `mem::replace` of it.
            *entry = if matches!(entry, WaitSlot::Pending(_)) {
                WaitSlot::Abandoned
            } else {
                WaitSlot::Free
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    thread_local! {
        static WAITS: Waits<u32> = const { Waits::new() };
    }

    fn fill(slot: usize, value: u32) {
        WAITS.with(|w| w.fill(slot, value));
        run();
    }

    fn log() -> Rc<RefCell<Vec<String>>> {
        Rc::new(RefCell::new(Vec::new()))
    }

    #[test]
    fn a_task_runs_to_its_first_wait_at_once_and_resumes_when_filled() {
        let seen = log();
        let slots = Rc::new(Cell::new(usize::MAX));
        let (s, sl) = (seen.clone(), slots.clone());
        spawn(async move {
            s.borrow_mut().push("start".into());
            let wait = Waits::open(&WAITS);
            sl.set(wait.slot());
            let v = wait.await;
            s.borrow_mut().push(format!("got {v}"));
        });
        assert_eq!(*seen.borrow(), ["start"]);
        fill(slots.get(), 7);
        assert_eq!(*seen.borrow(), ["start", "got 7"]);
        assert_eq!(WAITS.with(|w| w.in_use()), 0, "the slot is free again");
    }

    #[test]
    fn two_tasks_interleave_and_slots_are_reused() {
        let seen = log();
        let mut slots = Vec::new();
        for name in ["a", "b"] {
            let s = seen.clone();
            let slot = Rc::new(Cell::new(0));
            let sl = slot.clone();
            spawn(async move {
                let wait = Waits::open(&WAITS);
                sl.set(wait.slot());
                let v = wait.await;
                s.borrow_mut().push(format!("{name}{v}"));
            });
            slots.push(slot.get());
        }
        assert_ne!(slots[0], slots[1]);
        fill(slots[1], 2);
        fill(slots[0], 1);
        assert_eq!(*seen.borrow(), ["b2", "a1"]);
        let again = Waits::open(&WAITS);
        assert!(slots.contains(&again.slot()), "a freed slot is reused");
    }

    #[test]
    fn a_waker_from_another_task_wakes_a_parked_one() {
        // The shape of the token refresh: waiters park with their wakers, the refresher wakes them.
        let parked: Rc<RefCell<Vec<Waker>>> = Rc::default();
        let released = Rc::new(Cell::new(false));
        let seen = log();
        for name in ["w1", "w2"] {
            let (p, r, s) = (parked.clone(), released.clone(), seen.clone());
            spawn(async move {
                std::future::poll_fn(|cx| {
                    if r.get() {
                        Poll::Ready(())
                    } else {
                        p.borrow_mut().push(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
                s.borrow_mut().push(name.into());
            });
        }
        let slot = Rc::new(Cell::new(0));
        let (p, r, sl) = (parked.clone(), released.clone(), slot.clone());
        spawn(async move {
            let wait = Waits::open(&WAITS);
            sl.set(wait.slot());
            wait.await;
            r.set(true);
            p.borrow_mut().drain(..).for_each(Waker::wake);
        });
        assert!(seen.borrow().is_empty());
        fill(slot.get(), 0);
        assert_eq!(*seen.borrow(), ["w1", "w2"]);
    }

    #[test]
    fn a_spawn_from_inside_a_poll_runs_after_that_poll() {
        let seen = log();
        let s = seen.clone();
        spawn(async move {
            let inner = s.clone();
            spawn(async move { inner.borrow_mut().push("inner".into()) });
            s.borrow_mut().push("outer done".into());
        });
        assert_eq!(*seen.borrow(), ["outer done", "inner"]);
    }

    #[test]
    fn a_dropped_wait_is_freed_when_the_host_fills_it() {
        let wait = Waits::open(&WAITS);
        let slot = wait.slot();
        drop(wait);
        assert_eq!(WAITS.with(|w| w.in_use()), 1, "still owned by the host");
        fill(slot, 1);
        assert_eq!(WAITS.with(|w| w.in_use()), 0);
        fill(slot, 2); // a second fill of a free slot is ignored
        assert_eq!(WAITS.with(|w| w.in_use()), 0);
    }

    #[test]
    fn finished_tasks_free_their_slots() {
        for _ in 0..3 {
            spawn(async {});
        }
        EXECUTOR.with(|executor| {
            let tasks = executor.tasks.borrow();
            assert!(tasks.iter().all(|s| matches!(s, Slot::Free)));
            assert!(tasks.len() <= 1, "slot reused: {} slots", tasks.len());
        });
    }
}
