// Video files from a pipeline's frames, read back by ffprobe and ffmpeg: MP4 (H.264, yuv420p, the frame count,
// size and rate asked, even sides), animated WebP, GIF (also without ffmpeg), and ffmpeg missing or failing.
import assert from "node:assert/strict";
import { encodeVideo, videoFormatSupport } from "../../src/pipeline/video/encode.ts";
import { FfmpegError } from "../../src/pipeline/video/ffmpeg.ts";
import type { FrameShape } from "../../src/pipeline/video/frames.ts";
import { gifDelays } from "../../src/pipeline/video/gif.ts";
import { decodeVideo, movingFrames, probeVideo, psnr, rgbBytes, webpFrames } from "../support/video.ts";

const MISSING_FFMPEG = "ditserve-no-such-ffmpeg";

Deno.test("mp4: H.264 yuv420p with every frame at the size and rate asked; decodes close to the frames", async () => {
  const shape: FrameShape = [9, 3, 32, 48];
  const frames = movingFrames(9, 48, 32);
  const mp4 = await encodeVideo(frames, shape, { format: "mp4", fps: 8 });
  const probed = await probeVideo(mp4, ".mp4");
  assert.deepEqual(
    { ...probed, frameDurations: undefined },
    {
      codec: "h264",
      pixFmt: "yuv420p",
      width: 48,
      height: 32,
      frames: 9,
      frameRate: "8/1",
      start: 0,
      duration: 9 / 8,
      frameDurations: undefined,
    },
  );
  // Lossy: constant quality 18 on smooth waves keeps > 30 dB; a swapped channel or a flipped frame is < 15 dB.
  const decoded = await decodeVideo(mp4, ".mp4");
  const value = psnr(decoded, rgbBytes(frames, shape));
  assert.ok(value > 30, `PSNR ${value.toFixed(2)} dB, want > 30`);
  // Frame 0 against frame 1 is far lower: the frames really differ, so the order is checked too.
  const per = 48 * 32 * 3;
  const next = psnr(decoded.subarray(0, per), rgbBytes(frames, shape).subarray(per, 2 * per));
  assert.ok(next < value - 5, `frame 0 vs 1: ${next.toFixed(2)} dB`);
});

Deno.test("mp4: odd sides are padded to even ones by repeating the last column and row", async () => {
  const shape: FrameShape = [5, 3, 17, 33];
  const frames = movingFrames(5, 33, 17);
  const mp4 = await encodeVideo(frames, shape, { format: "mp4", fps: 16 });
  const probed = await probeVideo(mp4, ".mp4");
  assert.deepEqual([probed.width, probed.height, probed.frames], [34, 18, 5]);
  const decoded = await decodeVideo(mp4, ".mp4");
  // The padded column repeats column 32: its bytes are close to that column's (4:2:0 blurs chroma a little).
  let worst = 0;
  for (let f = 0; f < 5; f++) {
    for (let y = 0; y < 17; y++) {
      for (let c = 0; c < 3; c++) {
        const at = (x: number) => decoded[((f * 18 + y) * 34 + x) * 3 + c];
        worst = Math.max(worst, Math.abs(at(33) - at(32)));
      }
    }
  }
  assert.ok(worst <= 12, `padded column differs from the last by up to ${worst}`);
});

Deno.test("gif: every frame, timed to the frame rate, close to the frames; needs no ffmpeg", async () => {
  const shape: FrameShape = [5, 3, 24, 40];
  const frames = movingFrames(5, 40, 24);
  const gif = await encodeVideo(frames, shape, { format: "gif", fps: 16, ffmpeg: MISSING_FFMPEG });
  assert.equal(new TextDecoder().decode(gif.subarray(0, 6)), "GIF89a");
  const probed = await probeVideo(gif, ".gif");
  assert.deepEqual([probed.codec, probed.width, probed.height, probed.frames], ["gif", 40, 24, 5]);
  assert.deepEqual(probed.frameDurations, [0.06, 0.07, 0.06, 0.06, 0.06]);
  const decoded = await decodeVideo(gif, ".gif");
  const value = psnr(decoded, rgbBytes(frames, shape));
  // 256 colours per frame (rgb565 quantizer) on smooth waves: > 30 dB; a swapped channel is < 15 dB.
  assert.ok(value > 30, `PSNR ${value.toFixed(2)} dB, want > 30`);
});

Deno.test("gif delays: centiseconds rounded from each frame's start, so the total stays exact", () => {
  assert.deepEqual(gifDelays(4, 16), [6, 7, 6, 6]);
  assert.equal(gifDelays(16, 16).reduce((a, b) => a + b), 100);
  assert.equal(gifDelays(81, 16).reduce((a, b) => a + b), Math.round(8100 / 16));
  assert.deepEqual(gifDelays(3, 10), [10, 10, 10]);
});

Deno.test("webp: an animated WebP with every frame at the size and rate asked", async () => {
  const shape: FrameShape = [6, 3, 24, 40];
  const webp = await encodeVideo(movingFrames(6, 40, 24), shape, { format: "webp", fps: 8 });
  assert.deepEqual(webpFrames(webp), { width: 40, height: 24, durations: [125, 125, 125, 125, 125, 125] });
});

Deno.test("ffmpeg missing: mp4 and webp fail naming ffmpeg and how to install it; the support table says so", async () => {
  const shape: FrameShape = [1, 3, 16, 16];
  for (const format of ["mp4", "webp"] as const) {
    await assert.rejects(
      encodeVideo(movingFrames(1, 16, 16), shape, { format, fps: 8, ffmpeg: MISSING_FFMPEG }),
      (e: Error) => {
        assert.ok(e instanceof FfmpegError);
        assert.match(e.message, /^ffmpeg is not installed \(no `ditserve-no-such-ffmpeg` on PATH\); install/);
        assert.match(e.message, /apt-get install -y ffmpeg/);
        return true;
      },
    );
  }
  const missing = await videoFormatSupport(MISSING_FFMPEG);
  assert.equal(missing.gif, null);
  assert.match(missing.mp4 ?? "", /^mp4 needs ffmpeg: ffmpeg is not installed .*; gif works without it$/);
  assert.match(missing.webp ?? "", /^webp needs ffmpeg: /);
  assert.deepEqual(await videoFormatSupport(), { mp4: null, gif: null, webp: null });
});

Deno.test("ffmpeg failing: its exit code is the error, and writing the frames does not hang", async () => {
  // `false` exits 1 at once without reading its stdin: the frames' writes fail and must not block.
  await assert.rejects(
    encodeVideo(movingFrames(9, 256, 256), [9, 3, 256, 256], { format: "mp4", fps: 8, ffmpeg: "false" }),
    /^FfmpegError: ffmpeg failed \(exit code 1\)/,
  );
  await assert.rejects(
    encodeVideo(new Float32Array(10), [1, 3, 16, 16], { format: "gif", fps: 8 }),
    /video frames hold 10 values, not \[1, 3, 16, 16\]/,
  );
});
