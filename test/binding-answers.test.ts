/* The binding's answers to an acquire (lib/native.ts AcquireAnswer): a copy that joins runs the
 * owner's binding under its own lib/, so this shape is part of the table format (copies.test.ts). */
import { fromRecord } from '../lib/errors';
import { binding, FLAGS, isErrorRecord, isQueued } from '../lib/native';
import { mkTmpDir, rmTmpDir } from './helpers';

// The shape of an acquire's answer (lib/native.ts AcquireAnswer) is part of the format too: granted
// a number, failed an error record, queued an object with its request id and how its outcome arrives.
test("an acquire's answers have the shape table format 6 promises", async () => {
  const dir = mkTmpDir();
  try {
    const opened = binding.openDir(dir);
    if (isErrorRecord(opened)) throw fromRecord(opened);
    const granted = binding.acquire(opened.handle, 'r', FLAGS.autoCreate, 'n1');
    if (isErrorRecord(granted)) throw fromRecord(granted);
    expect(granted).toBeGreaterThan(0);
    const failed = binding.acquire(opened.handle, 'r', 0, 'n2');
    expect(isErrorRecord(failed) && fromRecord(failed).code).toBe('EBUSY');
    const queued = binding.acquireWait(opened.handle, 'r', 0, 'n2');
    expect(queued).toEqual({ request: expect.any(Number), started: undefined });
    if (!isQueued(queued)) throw new Error('not queued');
    const onPool = binding.acquireWaitAsync(opened.handle, 'r', 0, 'n3');
    // (started is a Promise of Node's realm, not of the test's: matched by its shape)
    expect(onPool).toEqual({ request: expect.any(Number), started: expect.objectContaining({ then: expect.any(Function) }) });
    // Its first attempt queues it: the outcome comes otherwise (here: the cancel below).
    expect(await onPool.started).toEqual({ request: onPool.request, started: undefined });
    expect(binding.cancel(queued.request)).toBe(true);
    expect(binding.cancel(onPool.request)).toBe(true);
    expect(binding.release(granted)).toBe(true);
  } finally {
    rmTmpDir(dir);
  }
});
