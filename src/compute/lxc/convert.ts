import { existsSync } from 'node:fs';
import { readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isManagedName } from '../../core/compute.ts';
import type { Logger } from '../../observability/logger.ts';
import { convertConfig, isUnprivileged, type Isolation } from './config.ts';
import { grantTraversal, ownedByRange, shiftTree } from './idmap.ts';
import type { LxcTools } from './tools.ts';

/**
 * Containers made before the driver ran them unprivileged are converted in
 * place, not recreated, so what they wrote is kept: stopped if running, their
 * writable layer and the layer below it (an old base template or a clone
 * template, shared by its clones) shifted into the mapped id range, their
 * config given the id map and walls, and started again if they were running.
 * The lower layer stays the same directory: overlayfs records copied-up
 * files' origins by inode, so a new lower would hide them. Each step can be
 * repeated, so a conversion a crash interrupted completes on the next run;
 * the config is written last and is what marks a container converted.
 */

export interface ConvertContext {
  lxcPath: string;
  tools: LxcTools;
  isolation: (name: string) => Isolation;
  log: Logger;
}

/** `lxc.rootfs.path` split into its layers (`overlay:<lower>:<upper>` or `dir:<path>`). */
export function rootfsLayers(config: string): { lower?: string; upper: string } | undefined {
  const value = /^\s*lxc\.rootfs\.path\s*=\s*(\S+)/m.exec(config)?.[1];
  if (!value) return undefined;
  if (value.startsWith('overlay:') || value.startsWith('overlayfs:')) {
    const rest = value.slice(value.indexOf(':') + 1);
    const cut = rest.lastIndexOf(':');
    return { lower: rest.slice(0, cut).replace(/^dir:/, ''), upper: rest.slice(cut + 1) };
  }
  return { upper: value.replace(/^dir:/, '') };
}

/** Host directories a config bind-mounts (`lxc.mount.entry = <source> …`). */
export function mountSources(config: string): string[] {
  return [...config.matchAll(/^\s*lxc\.mount\.entry\s*=\s*(\/\S+)\s/gm)].map((m) => m[1]!);
}

/** Shift a clone template's rootfs into the range once (its clones share it as their lower layer). */
export async function ensureTemplateShifted(rootfs: string, isolation: Isolation): Promise<void> {
  if (!(await ownedByRange(rootfs, isolation.idmap))) await shiftTree(rootfs, isolation.idmap);
}

/**
 * Host ports a container's environment names at the bridge address (its
 * database URL, the API URL): what a container made before `hostPorts` were
 * recorded is given, so the network policy keeps what it used open. Pure.
 */
export function hostPortsFromEnv(envFile: string, gateway: string): number[] {
  const at = new RegExp(`(?:^|[/@'=])${gateway.replaceAll('.', '\\.')}:(\\d{1,5})(?!\\d)`, 'g');
  const ports = [...envFile.matchAll(at)].map((m) => Number(m[1])).filter((p) => p > 0 && p < 65536);
  return [...new Set(ports)].sort((a, b) => a - b);
}

/** Record the host ports of a container from an older version in its meta.json (before the policy is drawn). */
export async function backfillHostPorts(lxcPath: string, name: string, gateway: string): Promise<void> {
  const file = path.join(lxcPath, name, 'aiqso', 'meta.json');
  const meta = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as { hostPorts?: number[] };
  if (meta.hostPorts) return;
  const env = await readFile(path.join(lxcPath, name, 'aiqso', 'env'), 'utf8').catch(() => '');
  const next = JSON.stringify({ ...meta, hostPorts: hostPortsFromEnv(env, gateway) });
  await writeFile(`${file}.tmp`, next, { mode: 0o644 });
  await rename(`${file}.tmp`, file);
}

/** Whether `name`'s config is still a privileged one. */
export async function needsConversion(lxcPath: string, name: string): Promise<boolean> {
  const config = await readFile(path.join(lxcPath, name, 'config'), 'utf8').catch(() => undefined);
  return config !== undefined && !isUnprivileged(config);
}

export async function convertContainer(ctx: ConvertContext, name: string): Promise<void> {
  const dir = path.join(ctx.lxcPath, name);
  const configFile = path.join(dir, 'config');
  const config = await readFile(configFile, 'utf8');
  const layers = rootfsLayers(config);
  if (!layers) throw new Error(`${configFile} has no lxc.rootfs.path`);
  const isolation = ctx.isolation(name);
  const running = (await ctx.tools.state(name)) === 'RUNNING';
  if (running) await ctx.tools.stop(name, 10);
  const { lower } = layers;
  if (lower) await ensureTemplateShifted(lower, isolation);
  // With overlayfs, the work directory beside the upper layer too (the mount fails read-only otherwise).
  await shiftTree(lower ? path.dirname(layers.upper) : layers.upper, isolation.idmap);
  await shiftTree(path.join(dir, 'aiqso'), isolation.idmap);
  const next = convertConfig(config, isolation);
  const uid = isolation.idmap.uid.start;
  for (const p of [layers.upper, path.join(dir, 'aiqso'), ...(lower ? [lower] : []), ...mountSources(next)])
    if (existsSync(p)) await grantTraversal(p, uid);
  const mode = (await stat(configFile)).mode & 0o777;
  await writeFile(`${configFile}.tmp`, next, { mode });
  await rename(`${configFile}.tmp`, configFile);
  if (running) await ctx.tools.start(name, dir);
  ctx.log.info({ container: name, restarted: running }, 'container converted to unprivileged');
}

/** Managed containers under `lxcPath` that are still privileged. */
export async function oldContainers(lxcPath: string): Promise<string[]> {
  const names = (await readdir(lxcPath).catch(() => [] as string[])).filter(isManagedName);
  const old: string[] = [];
  for (const name of names) if (await needsConversion(lxcPath, name)) old.push(name);
  return old;
}
