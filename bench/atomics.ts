/** Step counters in shared memory that pace threads through numbered rounds. */

export function signal(control: Int32Array, index: number, value: number): void {
  Atomics.store(control, index, value);
  Atomics.notify(control, index);
}

/** Blocks the calling thread until control[index] reaches `value`. */
export function waitFor(control: Int32Array, index: number, value: number): void {
  for (;;) {
    const current = Atomics.load(control, index);
    if (current >= value) return;
    Atomics.wait(control, index, current, 1000);
  }
}
