// The official Node SDK's App API reads against `cio mock`: what its Track calls sent comes
// back through getCustomersByEmail, getAttributes, getCustomersAttributes,
// getCustomerSegments and getCustomerActivities. Prints one line per check; exits 1 on any
// failure. Needs customerio-node 5 (the first with all five reads). Run by reads.sh.
const { TrackClient, APIClient } = require('customerio-node');

const base = process.argv[2];
const track = new TrackClient('site', 'key', { url: `${base}/api/v1` });
const api = new APIClient('app-key', { url: `${base}/v1` });

let failures = 0;
function check(what, ok, got) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${ok ? '' : `: got ${JSON.stringify(got)}`}`);
  if (!ok) failures += 1;
}

(async () => {
  await track.identify('42', { email: 'ada+1@example.com', plan: 'pro', _timestamp: 1700000000 });
  await track.identify('42', { plan: 'free', _timestamp: 1600000000 }); // older: ignored
  for (let i = 0; i < 3; i += 1) {
    await track.track('42', { name: 'viewed', id: `01J0000000000000000000000${i}`, data: { n: i } });
  }
  await track.trackPageView('42', '/pricing');
  await track.addDevice('42', 'tok-1', 'ios');
  await track.addCustomersToSegment(7, ['42']);

  const byEmail = await api.getCustomersByEmail('ada+1@example.com');
  check('getCustomersByEmail finds 42', byEmail.results.length === 1 && byEmail.results[0].id === '42', byEmail);

  const attrs = await api.getAttributes('42');
  check('getAttributes: plan kept by _timestamp order', attrs.customer.attributes.plan === 'pro', attrs);
  check('getAttributes: timestamps', attrs.customer.timestamps.plan === 1700000000, attrs.customer.timestamps);
  check('getAttributes: devices', attrs.customer.devices.length === 1 && attrs.customer.devices[0].id === 'tok-1', attrs.customer.devices);

  const sameByEmail = await api.getAttributes('ada+1@example.com', 'email');
  check('getAttributes by email', sameByEmail.customer.identifiers.id === '42', sameByEmail);

  const many = await api.getCustomersAttributes(['42', 'nobody']);
  check('getCustomersAttributes', many.customers.length === 1 && many.customers[0].customer.id === '42', many);

  const segments = await api.getCustomerSegments('42');
  check('getCustomerSegments', segments.segments.length === 1 && segments.segments[0].id === 7, segments);

  const activities = await api.getCustomerActivities('42', { limit: 2 });
  const names = activities.activities.map((a) => a.name);
  check('getCustomerActivities newest first', names.join(',') === '/pricing,viewed' && activities.activities[0].type === 'page', activities);
  check('getCustomerActivities next page', activities.next === '2', activities.next);
  const viewed = await api.getCustomerActivities('42', { type: 'event', name: 'viewed' });
  check('getCustomerActivities filtered', viewed.activities.length === 3 && viewed.activities[2].data.n === 0, viewed);

  try {
    await api.getAttributes('nobody');
    check('getAttributes of an unknown person is a 404', false, 'a 200');
  } catch (e) {
    check('getAttributes of an unknown person is a 404', e.statusCode === 404, e.message);
  }
  process.exit(failures === 0 ? 0 : 1);
})().catch((e) => {
  console.log(`FAIL ${e.stack || e}`);
  process.exit(1);
});
