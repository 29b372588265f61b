/**
 * Cluster display names (pure, unit-tested): the service's rule, checked as the user
 * types, and what a card shows.
 */
import { ICluster } from './types';

/** The service's rule (see the names contract in docs/internals.md). */
export const DISPLAY_NAME_PATTERN = /^[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?$/;

/**
 * Null when `text` is acceptable as a new cluster's name (empty: the service picks one),
 * else what to fix. The service checks again and has the last word (uniqueness too).
 */
export function displayNameProblem(text: string): string | null {
  const name = text.trim();
  if (name === '' || DISPLAY_NAME_PATTERN.test(name)) {
    return null;
  }
  if (name.length > 30) {
    return `A name has at most 30 characters (this one has ${name.length})`;
  }
  return "Use lowercase letters, digits and '-', starting with a letter and not ending with '-' (for example my-analysis)";
}

/** The first characters of a cluster id, enough to tell clusters apart. */
export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}

/** A card's title: the display name, or (from an older service) the short id. */
export function clusterTitle(cluster: ICluster): string {
  return cluster.display_name || shortId(cluster.name);
}
