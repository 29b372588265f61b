import { IPlot, filterPlots, plotLabel } from '../plots';

const PLOTS: IPlot[] = [
  { title: 'Individual Cpu', path: 'individual-cpu' },
  { title: 'Individual Task Stream', path: 'individual-task-stream' },
  { title: 'Individual Workers Memory', path: 'individual-workers-memory' },
  { title: 'Individual Cytoscape', path: 'statics/individual-cytoscape.html' }
];

describe('dashboard plots', () => {
  it('labels plots without the "Individual" every one has', () => {
    expect(plotLabel(PLOTS[1])).toBe('Task Stream');
    expect(plotLabel({ title: 'Individual', path: 'x' })).toBe('Individual');
    expect(plotLabel({ title: 'Graph', path: 'x' })).toBe('Graph');
  });

  it('finds plots by every word of the search, in any case', () => {
    expect(filterPlots(PLOTS, '')).toEqual(PLOTS);
    expect(filterPlots(PLOTS, '  ')).toEqual(PLOTS);
    expect(filterPlots(PLOTS, 'MEMORY').map(p => p.path)).toEqual([
      'individual-workers-memory'
    ]);
    expect(filterPlots(PLOTS, 'task stream').map(p => p.path)).toEqual([
      'individual-task-stream'
    ]);
    expect(filterPlots(PLOTS, 'stream cpu')).toEqual([]);
    // The path counts too.
    expect(filterPlots(PLOTS, 'statics').map(p => p.path)).toEqual([
      'statics/individual-cytoscape.html'
    ]);
  });

  it('does not take "individual" as a word to skip', () => {
    expect(filterPlots(PLOTS, 'individual')).toHaveLength(4);
  });
});
