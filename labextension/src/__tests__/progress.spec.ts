import { startProgress } from '../progress';
import { ICluster } from '../types';

function cluster(
  status: ICluster['status'],
  workers: ICluster['workers'],
  events: ICluster['events'] = []
): ICluster {
  return { name: 'abc', status, workers, events } as ICluster;
}

describe('start-up progress', () => {
  it('shows the scheduler starting, with the latest step', () => {
    const progress = startProgress(
      cluster('PENDING', { requested: 2, running: 0, pending: 0 }, [
        { time: 't1', message: 'Cluster submitted' },
        { time: 't2', message: 'Starting the scheduler process' }
      ])
    );
    expect(progress).toMatchObject({
      schedulerStarting: true,
      step: 'Starting the scheduler process',
      summary: 'Starting the scheduler; 2 workers will follow'
    });
    expect(
      startProgress(
        cluster('PENDING', { requested: 0, running: 0, pending: 0 })
      )?.summary
    ).toBe('Starting the scheduler');
  });

  it('counts running, starting and waiting workers once the scheduler runs', () => {
    const progress = startProgress(
      cluster('RUNNING', { requested: 4, running: 1, pending: 2 })
    );
    expect(progress).toMatchObject({
      schedulerStarting: false,
      step: null,
      running: 1,
      pending: 2,
      queued: 1,
      requested: 4,
      summary: '1 of 4 workers running, 2 starting, 1 waiting'
    });
    expect(
      startProgress(
        cluster('RUNNING', { requested: 1, running: 0, pending: 1 })
      )?.summary
    ).toBe('0 of 1 worker running, 1 starting');
  });

  it('has nothing to show once every worker runs, or when stopping', () => {
    for (const done of [
      cluster('RUNNING', { requested: 2, running: 2, pending: 0 }),
      cluster('RUNNING', { requested: 0, running: 0, pending: 0 }),
      cluster('RUNNING', { requested: 1, running: 3, pending: 0 }),
      cluster('STOPPING', { requested: 2, running: 0, pending: 2 }),
      cluster('FAILED', { requested: 2, running: 0, pending: 0 })
    ]) {
      expect(startProgress(done)).toBeNull();
    }
  });
});
