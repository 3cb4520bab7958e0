// Labels in Norwegian (the default) and English. The data stay as recorded.

const words = {
  nb: {
    title: 'Meldingsloggen', skip: 'Hopp til innholdet', logout: 'Logg ut', other_lang: 'English',
    'nav.overview': 'Oversikt', 'nav.reports': 'Rapporter', 'nav.message': 'Melding',
    'login.title': 'Logg inn', 'login.token': 'Token', 'login.submit': 'Logg inn',
    'login.help': 'Logg inn med et API-token (ledger token create) eller et Maskinporten-token. Tokenet blir på serveren; nettleseren får bare en øktcookie.',
    'login.failed': 'Tokenet ble ikke godtatt: ukjent, tilbakekalt eller utløpt.',
    'who': 'Innlogget for {org}', loading: 'Henter …', error: 'Feil',
    'overview.title': 'Oversikt', 'overview.verdicts': 'Meldinger etter dom nå',
    'overview.incidents': 'Hendelser (alt som noen gang gikk galt)',
    'overview.lost_by_district': 'Meldinger tapt uåpnet per måned, per avsender',
    'overview.verdicts_by_month': 'Dom per sendemåned',
    'overview.total': 'Meldinger i alt', 'overview.top': 'de {n} største avsenderne; resten samlet',
    'overview.others': 'Andre',
    'basis.checkpoint': 'Beregnet på sjekkpunkt', 'basis.size': 'størrelse', 'basis.root': 'rot',
    'basis.cosigned': 'Medsignert av', 'basis.not_cosigned': 'ikke medsignert av vitner',
    'basis.policy': 'Regelverk', 'basis.judged': 'Vurdert per', 'basis.after': 'oppføringer etter sjekkpunktet',
    'basis.digest': 'Sammendrag (SHA-256 av radene)',
    'verdict.open': 'Åpne', 'verdict.at_risk': 'I faresonen', 'verdict.late': 'Forsinket',
    'verdict.completed': 'Fullført', 'verdict.lost': 'Tapt', 'verdict.resolved': 'Løst',
    'verdict.stuck_in_handoff': 'Fast i overlevering',
    'incident.lost_unread': 'Tapt uåpnet', 'incident.failed': 'Feilet',
    'incident.handoff_never_received': 'Overlevering aldri mottatt',
    'incident.never_delivered': 'Aldri levert', 'incident.opened_late': 'Åpnet for sent',
    'incident.ack_late': 'Kvittert for sent',
    'reports.title': 'Rapporter', 'reports.kind': 'Rapport', 'reports.from': 'Avsender',
    'reports.to': 'Mottaker', 'reports.party': 'Avsender eller mottaker', 'reports.category': 'Kategori',
    'reports.channel': 'Kanal', 'reports.since': 'Sendt fra', 'reports.until': 'Sendt til',
    'reports.as_of': 'Slik det sto (hendelsestid)', 'reports.known_at': 'Det loggen visste (registreringstid)',
    'reports.now': 'Vurdert per', 'reports.ever': 'Noen gang (ikke bare nå)', 'reports.incident_kind': 'Hendelsestype',
    'reports.run': 'Vis', 'reports.rows': '{n} rader', 'reports.page': 'Side {p} av {n}',
    'reports.prev': 'Forrige', 'reports.next': 'Neste', 'reports.csv': 'Last ned CSV', 'reports.json': 'Last ned JSON',
    'reports.print': 'Skriv ut', 'reports.none': 'Ingen rader.',
    'col.message': 'Melding', 'col.verdict': 'Dom', 'col.reason': 'Grunn', 'col.from': 'Avsender',
    'col.to': 'Mottaker', 'col.category': 'Kategori', 'col.channel': 'Kanal', 'col.origin_at': 'Sendt',
    'col.kind': 'Hendelse', 'col.began_at': 'Begynte', 'col.ended_at': 'Sluttet', 'col.cause': 'Årsak',
    'message.title': 'Melding', 'message.id': 'Meldings-ID (ID eller AVSENDER/MOTTAKER/ID)',
    'message.show': 'Vis', 'message.as_of': 'Slik det sto på dato', 'message.timeline': 'Livsløp',
    'message.deadlines': 'Frister', 'message.incidents': 'Hendelser', 'message.family': 'Omsendinger',
    'message.resent_from': 'Sendt på nytt fra', 'message.resent_to': 'Sendt på nytt som',
    'message.verdict': 'Dom', 'message.none': 'Ingen.', 'message.recorded': 'registrert',
    'deadline.met': 'overholdt', 'deadline.met_late': 'for sent', 'deadline.missed': 'oversittet', 'deadline.pending': 'løper',
    'deadline.open': 'Åpnes innen', 'deadline.acknowledge': 'Kvitteres innen', 'deadline.handoff_receive': 'Mottas innen',
    'verify.button': 'Verifiser', 'verify.title': 'Bevis', 'verify.key': 'Loggens nøkkel',
    'verify.key_from_server': 'Nøkkelen og vitneregelverket kom fra serveren selv. Sammenlign nøkkelen med den du har fått utenom serveren, eller lim inn din egen.',
    'verify.key_yours': 'Du bruker din egen nøkkel.', 'verify.paste': 'Din nøkkel og ditt regelverk (valgfritt)',
    'verify.save': 'Bruk denne', 'verify.reset': 'Bruk serverens',
    'verify.ok': 'Bekreftet: alle {n} oppføringer er med i loggen, signert og medsignert som regelverket krever.',
    'verify.failed': 'Ikke bekreftet: {what}', 'verify.entry': 'Oppføring {seq}',
    'step.log_signature': 'Loggens signatur', 'step.cosignature': 'Vitnesignatur', 'step.quorum': 'Vitnekrav',
    'step.entry': 'Oppføringen', 'step.leaf': 'Bladhash', 'step.inclusion': 'Inklusjonsbevis', 'step.format': 'Format',
    'step.match': 'Samme oppføring som i tidslinjen',
    'nav.audit': 'Revisjon', 'audit.title': 'For revisorer',
    'audit.intro': 'Hele loggen som en revisjonspakke: hver oppføring slik den er lagret og hashet, hvert signerte sjekkpunkt og nøkkelen. Den kontrolleres uten nett og uten denne serveren.',
    'audit.origin': 'Logg', 'audit.size': 'Oppføringer', 'audit.hash': 'Hashfunksjon',
    'audit.key_warning': 'Nøkkelen vises her slik serveren oppgir den. Kontroller pakken med nøkkelen du fikk utenom serveren.',
    'audit.bundle': 'Last ned revisjonspakke (.tar)', 'audit.key': 'Last ned verifier.key',
    'audit.needs_scope': 'Revisjonspakken krever scope ledger:audit eller ledger:regulator.',
    'audit.check': 'Kontroller den', 'audit.policy': 'Vitneregelverk (witness.policy)',
  },
  en: {
    title: 'Message ledger', skip: 'Skip to content', logout: 'Log out', other_lang: 'Norsk',
    'nav.overview': 'Overview', 'nav.reports': 'Reports', 'nav.message': 'Message',
    'login.title': 'Log in', 'login.token': 'Token', 'login.submit': 'Log in',
    'login.help': 'Log in with an API token (ledger token create) or a Maskinporten token. The token stays on the server; the browser gets only a session cookie.',
    'login.failed': 'The token was not accepted: unknown, revoked or expired.',
    'who': 'Logged in for {org}', loading: 'Loading …', error: 'Error',
    'overview.title': 'Overview', 'overview.verdicts': 'Messages by verdict now',
    'overview.incidents': 'Incidents (everything that ever went wrong)',
    'overview.lost_by_district': 'Messages lost unread per month, per sender',
    'overview.verdicts_by_month': 'Verdict by month sent',
    'overview.total': 'Messages in all', 'overview.top': 'the {n} largest senders; the rest together',
    'overview.others': 'Others',
    'basis.checkpoint': 'Computed on checkpoint', 'basis.size': 'size', 'basis.root': 'root',
    'basis.cosigned': 'Cosigned by', 'basis.not_cosigned': 'not cosigned by witnesses',
    'basis.policy': 'Policy', 'basis.judged': 'Judged at', 'basis.after': 'entries after the checkpoint',
    'basis.digest': 'Digest (SHA-256 of the rows)',
    'verdict.open': 'Open', 'verdict.at_risk': 'At risk', 'verdict.late': 'Late',
    'verdict.completed': 'Completed', 'verdict.lost': 'Lost', 'verdict.resolved': 'Resolved',
    'verdict.stuck_in_handoff': 'Stuck in hand-off',
    'incident.lost_unread': 'Lost unread', 'incident.failed': 'Failed',
    'incident.handoff_never_received': 'Hand-off never received',
    'incident.never_delivered': 'Never delivered', 'incident.opened_late': 'Opened late',
    'incident.ack_late': 'Acknowledged late',
    'reports.title': 'Reports', 'reports.kind': 'Report', 'reports.from': 'Sender',
    'reports.to': 'Recipient', 'reports.party': 'Sender or recipient', 'reports.category': 'Category',
    'reports.channel': 'Channel', 'reports.since': 'Sent from', 'reports.until': 'Sent until',
    'reports.as_of': 'As it stood (event time)', 'reports.known_at': 'What the log knew (record time)',
    'reports.now': 'Judged at', 'reports.ever': 'Ever (not only now)', 'reports.incident_kind': 'Incident kind',
    'reports.run': 'Show', 'reports.rows': '{n} rows', 'reports.page': 'Page {p} of {n}',
    'reports.prev': 'Previous', 'reports.next': 'Next', 'reports.csv': 'Download CSV', 'reports.json': 'Download JSON',
    'reports.print': 'Print', 'reports.none': 'No rows.',
    'col.message': 'Message', 'col.verdict': 'Verdict', 'col.reason': 'Reason', 'col.from': 'Sender',
    'col.to': 'Recipient', 'col.category': 'Category', 'col.channel': 'Channel', 'col.origin_at': 'Sent',
    'col.kind': 'Incident', 'col.began_at': 'Began', 'col.ended_at': 'Ended', 'col.cause': 'Cause',
    'message.title': 'Message', 'message.id': 'Message id (ID or SENDER/RECIPIENT/ID)',
    'message.show': 'Show', 'message.as_of': 'As it stood on', 'message.timeline': 'Life',
    'message.deadlines': 'Deadlines', 'message.incidents': 'Incidents', 'message.family': 'Resends',
    'message.resent_from': 'Resent from', 'message.resent_to': 'Resent as',
    'message.verdict': 'Verdict', 'message.none': 'None.', 'message.recorded': 'recorded',
    'deadline.met': 'met', 'deadline.met_late': 'late', 'deadline.missed': 'missed', 'deadline.pending': 'running',
    'deadline.open': 'Opened by', 'deadline.acknowledge': 'Acknowledged by', 'deadline.handoff_receive': 'Received by',
    'verify.button': 'Verify', 'verify.title': 'Proof', 'verify.key': "The log's key",
    'verify.key_from_server': 'The key and the witness policy came from the server itself. Compare the key with the one you were given outside it, or paste your own.',
    'verify.key_yours': 'You are using your own key.', 'verify.paste': 'Your key and policy (optional)',
    'verify.save': 'Use this', 'verify.reset': "Use the server's",
    'verify.ok': 'Verified: all {n} entries are in the log, signed and cosigned as the policy requires.',
    'verify.failed': 'Not verified: {what}', 'verify.entry': 'Entry {seq}',
    'step.log_signature': "The log's signature", 'step.cosignature': 'Witness cosignature', 'step.quorum': 'Witness quorum',
    'step.entry': 'The entry', 'step.leaf': 'Leaf hash', 'step.inclusion': 'Inclusion proof', 'step.format': 'Format',
    'step.match': 'The same entry as in the timeline',
    'nav.audit': 'Audit', 'audit.title': 'For auditors',
    'audit.intro': 'The whole log as an export bundle: every entry as stored and hashed, every signed checkpoint and the key. It is checked offline, without this server.',
    'audit.origin': 'Log', 'audit.size': 'Entries', 'audit.hash': 'Hash function',
    'audit.key_warning': 'The key is shown here as the server states it. Check the bundle with the key you were given outside the server.',
    'audit.bundle': 'Download the export bundle (.tar)', 'audit.key': 'Download verifier.key',
    'audit.needs_scope': 'The export bundle needs the scope ledger:audit or ledger:regulator.',
    'audit.check': 'Check it', 'audit.policy': 'Witness policy (witness.policy)',
  },
};

export let lang = localStorage.getItem('ledger.lang') === 'en' ? 'en' : 'nb';

export function t(key, vars = {}) {
  const s = words[lang][key] ?? words.nb[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
}

export function setLang(l) {
  lang = l;
  localStorage.setItem('ledger.lang', l);
  document.documentElement.lang = l;
}

/** Labels of the static page. */
export function applyStatic() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  const b = document.getElementById('lang');
  b.textContent = t('other_lang');
  b.lang = lang === 'nb' ? 'en' : 'nb';
  document.title = t('title');
}
