/**
 * Formatting and URL helpers for the sidebar (pure, unit-tested).
 */
import { ICluster } from './types';

const UNITS: [string, number][] = [
  ['PiB', 2 ** 50],
  ['TiB', 2 ** 40],
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['kiB', 2 ** 10]
];

/** Bytes as dask writes them: "4.00 GiB", "512.00 MiB", "12 B". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) {
    return '–';
  }
  for (const [unit, size] of UNITS) {
    if (bytes >= size * 0.9) {
      return `${(bytes / size).toFixed(2)} ${unit}`;
    }
  }
  return `${bytes} B`;
}

/** Cores can be fractional (0.5 CPU per worker). */
export function formatCores(cores: number | null | undefined): string {
  if (cores === null || cores === undefined) {
    return '–';
  }
  return Number.isInteger(cores) ? String(cores) : cores.toFixed(1);
}

/** "2", or "1 of 3" while workers are starting or stopping. */
export function formatWorkers(cluster: ICluster): string {
  const { running, requested } = cluster.workers;
  return running === requested ? String(running) : `${running} of ${requested}`;
}

/** A one-line summary of adaptive scaling, or null when it is off. */
export function formatAdaptive(cluster: ICluster): string | null {
  const { active, minimum, maximum } = cluster.adaptive;
  if (!active) {
    return null;
  }
  return `adaptive ${minimum ?? 0}–${maximum ?? '∞'}`;
}

/** Statuses after which nothing changes any more. */
export function isFinal(cluster: ICluster): boolean {
  return cluster.status === 'STOPPED' || cluster.status === 'FAILED';
}

/** The dashboard plots offered as panes; the Bokeh page names of distributed. */
export const DASHBOARD_PLOTS: { name: string; label: string }[] = [
  { name: 'individual-task-stream', label: 'Task stream' },
  { name: 'individual-progress', label: 'Progress' },
  { name: 'individual-workers-memory', label: 'Workers memory' },
  { name: 'individual-cpu', label: 'CPU' },
  { name: 'individual-nprocessing', label: 'Processing tasks' },
  { name: 'individual-graph', label: 'Task graph' }
];

/**
 * The root of a cluster's dashboard (its URL without a trailing "/status" or "/"), or
 * null if it has none yet.
 */
export function dashboardRoot(cluster: ICluster): string | null {
  const url = cluster.dashboard_url;
  if (!url || cluster.status !== 'RUNNING') {
    return null;
  }
  return url.replace(/\/+$/, '').replace(/\/status$/, '');
}

/** The URL of one dashboard page (a plot name such as "individual-progress"). */
export function dashboardPageUrl(
  cluster: ICluster,
  page: string
): string | null {
  const root = dashboardRoot(cluster);
  return root === null ? null : `${root}/${page.replace(/^\/+/, '')}`;
}

/** The Python lines that connect a notebook to a cluster. */
export function connectCode(name: string): string {
  // JSON string syntax is valid Python for a cluster name (hex, letters, - and _).
  return [
    'from hubgate import Gateway',
    '',
    `cluster = Gateway().connect(${JSON.stringify(name)})`,
    'client = cluster.get_client()',
    'client'
  ].join('\n');
}

/** The message of an error from the server extension (`{"error": ...}`) or the network. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    return err.message;
  }
  return String(err);
}
