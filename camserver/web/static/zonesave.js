// The zone editor's Save: this camera's shapes into config.toml through PATCH /api/config, a JSON
// merge patch (RFC 7396) of the tables that changed, other cameras' entries kept as the file has them.
//
// Two writers never lose a change: the editor remembers the shapes it loaded; if the file holds other
// shapes for this camera when Save reads it, or the file changes between that read and the PATCH
// (412, If-Match), Save says so and the editor loads the file's shapes again.

import { ApiError, write } from "./api.js";

// editor kind -> [table, key] in config.toml
export const TABLES = { zone: ["events", "zones"], object: ["events", "masks"], motion: ["motion", "masks"] };
// /api/zones key -> editor kind
const API_KINDS = { zones: "zone", motion_masks: "motion", object_masks: "object" };

const round = (v) => Math.round(Math.min(1, Math.max(0, Number(v))) * 1000) / 1000;

/** A shape as config.toml holds it. */
export function entry(camera, kind, shape) {
  const out = { camera };
  if (kind === "zone") out.name = shape.name;
  out.points = shape.points.map(([x, y]) => [x, y]);
  if (kind !== "motion" && shape.labels.length) out.labels = [...shape.labels].sort();
  return out;
}

/** One entry in a form that compares equal whatever wrote it (the file, /api/zones, the editor). */
function normal(e) {
  return JSON.stringify([e.camera, e.name ?? null, (e.points || []).map(([x, y]) => [round(x), round(y)]),
    [...(e.labels || [])].sort()]);
}

function fileEntries(file, kind) {
  const [table, key] = TABLES[kind];
  const list = file && file[table] && file[table][key];
  return Array.isArray(list) ? list : [];
}

/** This camera's shapes of each kind in /api/zones' answer, for comparing with the file's later. */
export function loadedShapes(apiData, camera, kinds) {
  const out = {};
  for (const [key, kind] of Object.entries(API_KINDS)) {
    if (kinds.includes(kind)) out[kind] = (apiData[key] || []).filter((e) => e.camera === camera).map(normal);
  }
  return JSON.stringify(out);
}

/** The file's shapes of this camera in /api/zones' form (what the editor loads when the file changed). */
export function asApiData(file, camera, kinds) {
  const out = {};
  for (const [key, kind] of Object.entries(API_KINDS)) {
    if (kinds.includes(kind)) out[key] = fileEntries(file, kind).filter((e) => e.camera === camera);
  }
  return out;
}

function fileShapes(file, camera, kinds) {
  const out = {};
  for (const kind of Object.values(API_KINDS)) {
    if (kinds.includes(kind)) out[kind] = fileEntries(file, kind).filter((e) => e.camera === camera).map(normal);
  }
  return JSON.stringify(out);
}

/** The merge patch that makes this camera's shapes of `kinds` the editor's; null when nothing changes. */
export function buildPatch(file, camera, shapes, kinds) {
  const patch = {};
  for (const kind of kinds) {
    const [table, key] = TABLES[kind];
    const entries = fileEntries(file, kind);
    const mine = shapes.filter((s) => s.kind === kind).map((s) => entry(camera, kind, s));
    const before = entries.filter((e) => e.camera === camera).map(normal);
    if (JSON.stringify(before) === JSON.stringify(mine.map(normal))) continue;
    patch[table] = patch[table] || {};
    patch[table][key] = [...entries.filter((e) => e.camera !== camera), ...mine];
  }
  return Object.keys(patch).length ? patch : null;
}

/** Shapes that cannot be saved (under 3 points), as sentences. */
export function unsaveable(shapes) {
  return shapes.filter((s) => s.points.length < 3)
    .map((s) => `${s.name} needs 3 points or more (it has ${s.points.length}).`);
}

/**
 * Save the camera's shapes. Resolves to {state: "saved", restart: [keys], live: [keys]}, {state:
 * "unchanged"}, {state: "stale", file} (the file changed: load its shapes), {state: "invalid", problems:
 * [lines]}, or null (the admin prompt was cancelled). Throws ApiError or Unreachable otherwise.
 */
export async function saveShapes(camera, shapes, kinds, loaded) {
  const current = await write("/api/config", { method: "GET" });
  if (!current) return null;
  if (fileShapes(current.file, camera, kinds) !== loaded) return { state: "stale", file: current.file };
  const patch = buildPatch(current.file, camera, shapes, kinds);
  if (!patch) return { state: "unchanged" };
  try {
    const done = await write("/api/config", { method: "PATCH", body: patch,
      headers: { "If-Match": current.version, "Content-Type": "application/merge-patch+json" } });
    if (!done) return null;
    return { state: "saved", restart: done.restart_needed || [], live: done.applied_live || [] };
  } catch (err) {
    if (err instanceof ApiError && err.status === 412) {
      const now = await write("/api/config", { method: "GET" });
      return now ? { state: "stale", file: now.file } : null;
    }
    if (err instanceof ApiError && err.status === 400 && err.body && Array.isArray(err.body.problems)) {
      return { state: "invalid", problems: err.body.problems };
    }
    throw err;
  }
}
