/**
 * What a cluster's card shows while it starts (pure, unit-tested): the scheduler's
 * start-up, then its workers, from the cluster JSON's status, events and worker counts.
 */
import { ICluster } from './types';

export interface IStartProgress {
  /** The scheduler is still starting (the cluster is PENDING). */
  schedulerStarting: boolean;
  /** The latest thing the service reported about the start, if any. */
  step: string | null;
  /** Workers with a scheduler connection. */
  running: number;
  /** Workers launched, not yet connected. */
  pending: number;
  /** Workers asked for, not launched yet. */
  queued: number;
  requested: number;
  /** One sentence for the card and for screen readers. */
  summary: string;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/**
 * The start-up state of `cluster`, or null when there is nothing to wait for: it is
 * running with every requested worker, or it is stopping or finished.
 */
export function startProgress(cluster: ICluster): IStartProgress | null {
  const starting = cluster.status === 'PENDING';
  if (!starting && cluster.status !== 'RUNNING') {
    return null;
  }
  const { requested } = cluster.workers;
  const running = Math.max(0, cluster.workers.running);
  const pending = Math.max(0, cluster.workers.pending);
  const queued = Math.max(0, requested - running - pending);
  if (!starting && running >= requested && pending === 0) {
    return null;
  }
  const last = cluster.events?.[cluster.events.length - 1];
  let summary: string;
  if (starting) {
    summary = 'Starting the scheduler';
    if (requested > 0) {
      summary += `; ${plural(requested, 'worker')} will follow`;
    }
  } else {
    const parts = [`${running} of ${plural(requested, 'worker')} running`];
    if (pending > 0) {
      parts.push(`${pending} starting`);
    }
    if (queued > 0) {
      parts.push(`${queued} waiting`);
    }
    summary = parts.join(', ');
  }
  return {
    schedulerStarting: starting,
    step: starting && last ? last.message : null,
    running,
    pending,
    queued,
    requested,
    summary
  };
}
