/**
 * The dashboard plots a cluster's scheduler offers, as the service lists them
 * (`api/hubgate/clusters/<id>/plots`), and the sidebar's search over them (pure,
 * unit-tested).
 */

/** One plot: its title and its page relative to the cluster's dashboard root. */
export interface IPlot {
  title: string;
  path: string;
}

export interface IPlotsReply {
  plots: IPlot[];
}

/** "Individual Task Stream" -> "Task Stream": every plot is an "individual" one. */
export function plotLabel(plot: IPlot): string {
  const label = plot.title.replace(/^individual\s+/i, '');
  return label || plot.title;
}

/**
 * The plots matching `query`: every word of it appears in the label or the path (case
 * ignored), in the given order. An empty query matches everything.
 */
export function filterPlots(plots: IPlot[], query: string): IPlot[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) {
    return plots;
  }
  return plots.filter(plot => {
    const text = `${plotLabel(plot)} ${plot.path}`.toLowerCase();
    return words.every(word => text.includes(word));
  });
}
