// Runs Node's google-auth-library against a running fake-google.
// Usage: node compat.mjs BASE_URL   (with google-auth-library installed; see docs/fake-google.md)
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(process.env.NODE_PATH_HINT || import.meta.url);
const { OAuth2Client } = require('google-auth-library');

const BASE = process.argv[2].replace(/\/$/, '');
const post = async (path, body) =>
  (await fetch(BASE + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json();
const secret = (await (await fetch(BASE + '/_fake/client_secret.json')).json()).web;

const client = new OAuth2Client({
  clientId: secret.client_id,
  clientSecret: secret.client_secret,
  endpoints: {
    oauth2TokenUrl: BASE + '/token',
    oauth2RevokeUrl: BASE + '/revoke',
    tokenInfoUrl: BASE + '/tokeninfo',
    oauth2FederatedSignonPemCertsUrl: BASE + '/oauth2/v1/certs',
    oauth2FederatedSignonJwkCertsUrl: BASE + '/oauth2/v3/certs',
  },
});

const minted = await post('/_fake/codes', { email: 'node@example.com' });
const { tokens } = await client.getToken({ code: minted.code, redirect_uri: '' });
assert.ok(tokens.refresh_token, 'first grant has a refresh token');
assert.ok(tokens.id_token);
console.log('ok: getToken');

const ticket = await client.verifyIdToken({ idToken: tokens.id_token, audience: secret.client_id });
assert.equal(ticket.getPayload().sub, minted.sub);
console.log('ok: verifyIdToken (PEM certs)');

const info = await client.getTokenInfo(tokens.access_token);
assert.equal(info.sub, minted.sub);
assert.ok(info.scopes.includes('https://www.googleapis.com/auth/drive.appdata'));
console.log('ok: getTokenInfo');

client.setCredentials({ refresh_token: tokens.refresh_token });
const { credentials } = await client.refreshAccessToken();
assert.ok(credentials.access_token.startsWith('ya29.'));
assert.notEqual(credentials.access_token, tokens.access_token);
console.log('ok: refreshAccessToken');

await client.revokeToken(tokens.refresh_token);
await assert.rejects(
  () => new OAuth2Client({ clientId: secret.client_id, clientSecret: secret.client_secret, endpoints: { oauth2TokenUrl: BASE + '/token' } })
    .refreshToken(tokens.refresh_token),
  (e) => /invalid_grant/.test(String(e?.response?.data?.error ?? e)),
);
console.log('ok: revokeToken then refresh fails with invalid_grant');

await assert.rejects(() => client.getToken({ code: minted.code }), (e) => /invalid_grant/.test(String(e?.response?.data?.error ?? e)));
console.log('ok: code reuse -> invalid_grant');
console.log('all Node compatibility checks passed');
