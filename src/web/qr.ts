import QRCode from 'qrcode';

/**
 * An authenticator app's `otpauth://` address as an inline SVG QR code, drawn
 * here (no other site sees the secret): two paths on a white square, with a
 * role and a label for screen readers and the design system's `qr` class. The
 * operator console's enrolment page and the enrol route (for the tenant
 * dashboard, which has no dependencies) both use it.
 */
export async function totpQrSvg(otpauthUrl: string): Promise<string> {
  const svg = await QRCode.toString(otpauthUrl, { type: 'svg', margin: 2, errorCorrectionLevel: 'M' });
  return svg
    .trim()
    .replace('<svg ', '<svg class="qr" role="img" aria-label="QR code for your authenticator app" ');
}
