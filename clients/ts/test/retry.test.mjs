import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_RETRY, resolveRetry, retryDelay } from "../dist/index.js";

test("delays grow by the factor up to the cap, jittered down by at most the jitter", () => {
  const policy = resolveRetry({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.2 });
  const top = (attempt) => retryDelay(policy, attempt, () => 0);
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(top), [100, 200, 400, 800, 1000, 1000]);
  // random() near 1 takes the full jitter off: 80 % of the delay.
  assert.equal(retryDelay(policy, 3, () => 0.999999), 320);
  for (let i = 0; i < 100; i++) {
    const d = retryDelay(policy, 2);
    assert.ok(d >= 160 && d <= 200, `${d}`);
  }
});

test("the defaults are crimson-client's: 1 s doubling to 30 s, 20 % jitter, no limit", () => {
  assert.deepEqual({ ...resolveRetry() }, { ...DEFAULT_RETRY });
  assert.equal(retryDelay(resolveRetry(), 1, () => 0), 1000);
  assert.equal(retryDelay(resolveRetry(), 100, () => 0), 30000);
});

test("a limit gives up after that many attempts; a factor of 1 keeps the delay fixed", () => {
  const policy = resolveRetry({ maxAttempts: 2, factor: 1, jitter: 0 });
  assert.deepEqual([1, 2, 3].map((n) => retryDelay(policy, n)), [1000, 1000, null]);
});

test("values that cannot work are refused, naming the field", () => {
  assert.throws(() => resolveRetry({ initialDelayMs: 0 }), /initialDelayMs/);
  assert.throws(() => resolveRetry({ initialDelayMs: 500, maxDelayMs: 100 }), /maxDelayMs \(100\)/);
  assert.throws(() => resolveRetry({ factor: 0.5 }), /factor/);
  assert.throws(() => resolveRetry({ jitter: 1.5 }), /jitter/);
  assert.throws(() => resolveRetry({ maxAttempts: 0 }), /maxAttempts/);
  assert.throws(() => resolveRetry({ maxAttempts: 1.5 }), /maxAttempts/);
});
