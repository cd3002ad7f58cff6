import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { Mailer } from '../core/mail.ts';
import { filesMailer } from './files.ts';
import { listmonkMailer } from './listmonk.ts';
import { smtpMailer } from './smtp.ts';

/** The mail driver configuration picks: SMTP, Listmonk's transactional API, or `.eml` files in `<data>/mail/`. */
export function createMailer(config: Config): Mailer {
  if (config.smtpUrl) return smtpMailer(config.smtpUrl, config.baseDomain);
  if (config.listmonkUrl) return listmonkMailer(config.listmonkUrl);
  return filesMailer(path.join(config.dataDir, 'mail'), { domain: config.baseDomain });
}
