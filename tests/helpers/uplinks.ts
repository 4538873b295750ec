import type { School } from '../../contracts/registry.js';

/** Registry fixtures for the poller's targets (#17): Zhejiang ▸ Hangzhou ▸ 西湖区 and 滨江区. */
export const UPLINK_REGIONS = [
  { id: '330000', name: '浙江省', level: 'province' },
  { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
  { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
  { id: '330108', name: '滨江区', level: 'county', parent: '330100' },
] as const;

/** A school of 西湖区 whose uplink is its device `gw`, interface `GigabitEthernet0/0/1` unless `extra` says. */
export function uplinkSchool(id: string, extra: Partial<School> = {}): School {
  return {
    id,
    name: `学校${id}`,
    region: '330106',
    area: 'urban',
    level: 'primary',
    classes: 12,
    students: 500,
    teachers: 40,
    uplinkDevice: 'gw',
    uplinkInterface: 'GigabitEthernet0/0/1',
    ...extra,
  };
}
