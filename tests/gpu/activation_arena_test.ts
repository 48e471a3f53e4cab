import assert from "node:assert/strict";
import { ActivationArena } from "../../src/gpu/activation_arena.ts";
import { gpuTest } from "../support/gpu.ts";

gpuTest(
  "activation arena: a given-back buffer is lent again (smallest that fits), and only release() frees",
  (ctx) => {
    const before = ctx.pool.stats();
    const arena = new ActivationArena(ctx.pool);
    const a = arena.take([4, 8]);
    const b = arena.take([2, 3]);
    assert.notEqual(a.buffer, b.buffer);
    arena.give(a);
    arena.give(b);
    // 6 values fit both; the smaller buffer is lent, with the shape asked for.
    const c = arena.take([6]);
    assert.equal(c.buffer, b.buffer);
    assert.deepEqual(c.shape, [6]);
    const d = arena.take([5, 5]); // 25 values: only a's 32 hold them
    assert.equal(d.buffer, a.buffer);
    assert.equal(d.byteLength, 100);
    const e = arena.take([40]); // nothing free holds 40: a new buffer
    assert.equal(ctx.pool.stats().allocations, before.allocations + 3);
    assert.equal(arena.bytes, (32 + 6 + 40) * 4);
    arena.giveAll();
    assert.equal(arena.take([40]).buffer, e.buffer);
    assert.throws(() => arena.give(ctx.pool.tensor([3])), /not lent by this arena/);
    arena.release();
    assert.equal(ctx.pool.stats().buffersInUse, before.buffersInUse + 1); // the foreign tensor above
  },
);
