import {
  connectCode,
  dashboardPageUrl,
  dashboardRoot,
  formatAdaptive,
  formatBytes,
  formatCores,
  formatWorkers,
  isFinal
} from '../format';
import { ICluster } from '../types';

function cluster(overrides: Partial<ICluster> = {}): ICluster {
  return {
    name: 'abc123',
    owner: 'alice',
    status: 'RUNNING',
    reason: null,
    options: {},
    created: null,
    started: null,
    stopped: null,
    workers: { requested: 2, running: 2, pending: 0 },
    adaptive: { active: false, minimum: null, maximum: null },
    threads: 4,
    memory: 4 * 2 ** 30,
    cores: 4,
    dashboard_url: '/services/dask-gateway/clusters/abc123/status',
    scheduler_address: 'gateway://127.0.0.1:8786/abc123',
    idle_since: null,
    events: [],
    ...overrides
  };
}

describe('formatting', () => {
  it('formats bytes like dask', () => {
    expect(formatBytes(4 * 2 ** 30)).toBe('4.00 GiB');
    expect(formatBytes(512 * 2 ** 20)).toBe('512.00 MiB');
    expect(formatBytes(0.95 * 2 ** 30)).toBe('0.95 GiB');
    expect(formatBytes(12)).toBe('12 B');
    expect(formatBytes(null)).toBe('–');
  });
  it('formats cores and workers', () => {
    expect(formatCores(4)).toBe('4');
    expect(formatCores(1.5)).toBe('1.5');
    expect(formatWorkers(cluster())).toBe('2');
    expect(
      formatWorkers(
        cluster({ workers: { requested: 3, running: 1, pending: 2 } })
      )
    ).toBe('1 of 3');
  });
  it('summarises adaptive scaling', () => {
    expect(formatAdaptive(cluster())).toBeNull();
    expect(
      formatAdaptive(
        cluster({ adaptive: { active: true, minimum: 1, maximum: 5 } })
      )
    ).toBe('adaptive 1–5');
  });
  it('knows final statuses', () => {
    expect(isFinal(cluster({ status: 'FAILED' }))).toBe(true);
    expect(isFinal(cluster({ status: 'STOPPING' }))).toBe(false);
  });
});

describe('dashboard URLs', () => {
  it('builds plot URLs under the dashboard root', () => {
    const c = cluster();
    expect(dashboardRoot(c)).toBe('/services/dask-gateway/clusters/abc123');
    expect(dashboardPageUrl(c, 'individual-task-stream')).toBe(
      '/services/dask-gateway/clusters/abc123/individual-task-stream'
    );
    const bare = cluster({
      dashboard_url: '/services/dask-gateway/clusters/abc123/'
    });
    expect(dashboardPageUrl(bare, 'status')).toBe(
      '/services/dask-gateway/clusters/abc123/status'
    );
  });
  it('offers none before the cluster runs', () => {
    expect(
      dashboardPageUrl(cluster({ status: 'PENDING' }), 'status')
    ).toBeNull();
    expect(
      dashboardPageUrl(cluster({ dashboard_url: null }), 'status')
    ).toBeNull();
  });
});

describe('connect code', () => {
  it('connects by name and makes a client', () => {
    expect(connectCode('abc123')).toBe(
      'from hubgate import Gateway\n\ncluster = Gateway().connect("abc123")\nclient = cluster.get_client()\nclient'
    );
  });
});
