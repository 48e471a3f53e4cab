// Workgroup counts past one dimension's limit (65535 by default): a flat count of workgroups laid out as
// [x, y] with x * y >= count. Kernels rebuild the flat index as wid.y * num_workgroups.x + wid.x and skip
// what lies past their data, so the excess of the last grid row does nothing.
import type { Gpu } from "../gpu/device.ts";

export function flatGrid(gpu: Gpu, count: number): [number, number, number] {
  const x = Math.min(count, gpu.info.limits.maxComputeWorkgroupsPerDimension);
  return [x, Math.ceil(count / x), 1];
}
