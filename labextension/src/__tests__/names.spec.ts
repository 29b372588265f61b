import { clusterTitle, displayNameProblem, shortId } from '../names';
import { ICluster } from '../types';

describe('display names', () => {
  it('accepts what the service accepts, and empty (the service picks one)', () => {
    for (const name of ['', '  ', 'a', 'my-analysis', 'x1', 'a'.repeat(30)]) {
      expect(displayNameProblem(name)).toBeNull();
    }
  });

  it('says what to fix otherwise', () => {
    for (const name of ['My Analysis', '1abc', 'abc-', '-abc', 'a_b', 'é']) {
      expect(displayNameProblem(name)).toMatch(/^Use lowercase letters/);
    }
    expect(displayNameProblem('a'.repeat(31))).toBe(
      'A name has at most 30 characters (this one has 31)'
    );
  });

  it('titles a card with the name, else the short id', () => {
    const id = '73ac361df8b14dc8b0a1b2c3d4e5f607';
    const cluster = { name: id } as ICluster;
    expect(shortId(id)).toBe('73ac361d');
    expect(clusterTitle(cluster)).toBe('73ac361d');
    expect(clusterTitle({ ...cluster, display_name: 'brisk-otter' })).toBe(
      'brisk-otter'
    );
  });
});
