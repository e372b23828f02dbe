// All user-visible texts of the web client, German and English.
// Templates use {placeholders}; t() fills them. Keys missing in one language fall back to English.

const STRINGS = {
  en: {
    appName: 'Video meeting',
    language: 'Language',
    skipToContent: 'Skip to main content',
    dismiss: 'Close message',
    cancel: 'Cancel',

    // join form
    formTitle: 'Join a meeting',
    formTitleRoom: 'Join the meeting “{room}”',
    formIntro: 'Please enter your name. Your browser will then ask whether this page may use your camera and microphone.',
    formRoom: 'Meeting ID',
    formName: 'Your name',
    formNameHint: 'The other participants will see this name.',
    formPin: 'PIN (optional)',
    formPinHint: 'Only needed if you received a PIN with your invitation.',
    formJoin: 'Join',
    formNameRequired: 'Please enter your name.',
    formRoomRequired: 'Please enter the meeting ID.',
    formPinWrong: 'The PIN is not correct. Please check it and try again.',
    formPinRequired: 'This meeting requires a PIN. Please enter it.',

    // connecting / lobby
    connectingTitle: 'Connecting …',
    connectingText: 'Your browser may ask whether this page may use your camera and microphone. Please allow access.',
    lobbyTitle: 'Waiting room',
    lobbyIntro: 'Welcome to “{room}”. A host will let you in shortly. Please keep this page open.',
    lobbyPosition: 'You are number {position} in the queue.',
    lobbyWaitMinutes: 'Estimated wait: about {minutes} minutes.',
    lobbyWaitOneMinute: 'Estimated wait: about 1 minute.',
    lobbyWaitUnderMinute: 'Estimated wait: less than a minute.',
    lobbyNoHost: 'No host has joined yet; you will be let in once one arrives.',
    lobbyLeave: 'Leave waiting room',

    // reconnecting
    lostTitle: 'Connection lost',
    lostCountdown: 'Reconnecting in {seconds} s …',
    lostTrying: 'Reconnecting …',
    reconnectNow: 'Reconnect now',
    reconnected: 'Connection restored.',

    // ended
    joinAgain: 'Join again',
    changeRoom: 'Choose another meeting',
    ended_left: 'You left the meeting',
    ended_left_text: 'Thank you for taking part.',
    ended_locked: 'This meeting is locked',
    ended_locked_text: 'No further participants are admitted at the moment. Please try again later.',
    ended_locked_out: 'Too many wrong PINs',
    ended_locked_out_text: 'For your protection, joining from this connection is blocked for a while. Please try again later or ask the person who invited you for the PIN.',
    ended_full: 'This meeting is full',
    ended_full_text: 'The maximum number of participants has been reached. Please try again later.',
    ended_denied: 'The host did not admit you',
    ended_denied_text: 'If you think this is a mistake, please contact the person who invited you.',
    ended_removed: 'A host removed you from the meeting',
    ended_removed_text: 'If you think this is a mistake, please contact the person who invited you.',
    ended_meeting_ended: 'The meeting has ended',
    ended_meeting_ended_text: 'Thank you for taking part.',
    ended_unknown_room: 'Meeting not found',
    ended_unknown_room_text: 'Please check the link or the meeting ID.',
    ended_generic: 'The meeting connection was ended',
    ended_generic_text: 'Reason: {reason}',

    // meeting
    participants: 'Participants',
    participantsCount: 'Participants ({count})',
    waitingCount: '{count} waiting',
    you: 'You',
    youSuffix: '(you)',
    noOthers: 'Nobody else is here yet.',
    role_host: 'Host',
    role_guest: 'Guest',
    kind_browser: 'Browser',
    kind_phone: 'Phone',
    kind_sip_room_system: 'Room system (SIP)',
    kind_h323_room_system: 'Room system (H.323)',
    statusMuted: 'Microphone off',
    statusHostMuted: 'Muted by a host',
    statusUnmuteForbidden: 'May not unmute',
    statusHand: 'Hand raised',
    statusSpeaking: 'Speaking',
    statusVideoOff: 'Camera off',
    statusReconnecting: 'Connection lost, reconnecting …',
    meetingLocked: 'Meeting locked',
    videoArea: 'Video',
    actionsFor: 'Actions for {name}',
    playAudio: 'Play meeting audio',
    audioBlocked: 'Your browser did not start the meeting audio automatically.',

    // own controls
    yourControls: 'Your controls',
    micMute: 'Mute microphone',
    micUnmute: 'Unmute microphone',
    camOff: 'Turn camera off',
    camOn: 'Turn camera on',
    handRaise: 'Raise hand',
    handLower: 'Lower hand',
    leave: 'Leave meeting',
    showParticipants: 'Participants',
    noMicrophone: 'No microphone is available.',
    noCamera: 'No camera is available.',

    // host controls
    hostControls: 'Meeting controls',
    muteAll: 'Mute all guests',
    muteAllForbid: 'and do not allow them to unmute themselves',
    allowAllUnmute: 'Allow all guests to unmute',
    mutePolicyHint: 'Guests are muted, also those who join later. They may unmute themselves.',
    mutePolicyForbidHint: 'Guests are muted, also those who join later, and may not unmute themselves.',
    lock: 'Lock meeting',
    unlock: 'Unlock meeting',
    lockedHint: 'The meeting is locked: nobody else can join.',
    unlockedHint: 'The meeting is open: new participants can join.',
    endMeeting: 'End meeting for everyone',
    hostMute: 'Mute {name}',
    hostUnmute: 'Unmute {name}',
    hostForbid: 'Forbid {name} to unmute',
    hostAllow: 'Allow {name} to unmute',
    hostLowerHand: "Lower {name}'s hand",
    hostRemove: 'Remove {name} from the meeting',
    lobbyAdmit: 'Admit {name}',
    lobbyDeny: 'Deny {name}',
    lobbyPanel: 'Waiting room',
    lobbyEmpty: 'Nobody is waiting.',
    lobbyEntryMeta: '{kind}, number {position} in the queue',
    confirmRemoveTitle: 'Remove {name}?',
    confirmRemoveText: '{name} will be disconnected from the meeting immediately.',
    confirmRemove: 'Remove',
    confirmEndTitle: 'End the meeting for everyone?',
    confirmEndText: 'All participants and everyone in the waiting room will be disconnected.',
    confirmEnd: 'End meeting',

    // notices (server codes and client-side ones)
    notice_host_muted: 'A host has muted your microphone.',
    notice_host_unmuted: 'A host has lifted the mute on your microphone.',
    notice_self_unmute_forbidden: 'A host has muted you. You can unmute once a host allows it.',
    notice_self_unmute_allowed: 'A host allows you to unmute yourself again.',
    notice_hand_lowered: 'A host lowered your hand.',
    notice_removed_from_lobby: 'You were removed from the waiting room.',
    notice_admitted: 'You have been admitted to the meeting.',
    notice_room_locked: 'The meeting has been locked.',
    notice_room_unlocked: 'The meeting has been unlocked.',
    notice_host_muted_by: '{by} has muted your microphone.',
    notice_host_unmuted_by: '{by} has lifted the mute on your microphone.',
    notice_self_unmute_forbidden_by: '{by} has muted you. You can unmute once a host allows it.',
    notice_self_unmute_allowed_by: '{by} allows you to unmute yourself again.',
    notice_hand_lowered_by: '{by} lowered your hand.',
    notice_lobby_waiting: '{name} is waiting in the waiting room.',
    notice_generic: 'Notice: {text}',
    handRaisedNotice: '{name} raised their hand.',

    // errors
    error_self_unmute_forbidden: 'The host has muted you. You can unmute once a host allows it.',
    error_not_allowed: 'You are not allowed to do this.',
    error_unknown_participant: 'This person is no longer in the meeting.',
    error_bad_message: 'The request could not be processed ({message}).',
    error_full: 'The meeting is full: nobody else can be admitted at the moment.',
    error_generic: 'Something went wrong: {message}',
    error_webrtc: 'The audio and video connection could not be established.',

    // media problems
    mediaBlockedTitle: 'Camera and microphone are blocked',
    mediaBlockedText: 'You can still listen and watch. To allow access, click the camera or lock symbol in your browser’s address bar, allow camera and microphone, then press “Try again”.',
    mediaNotFoundTitle: 'No camera or microphone found',
    mediaNotFoundText: 'You can still listen and watch. Connect a headset or camera and press “Try again”.',
    mediaFailedTitle: 'Camera and microphone could not be started',
    mediaFailedText: 'They may be in use by another program. You can still listen and watch. Close the other program and press “Try again”.',
    mediaNoCameraTitle: 'Camera not available',
    mediaNoCameraText: 'The others can hear you but not see you. If the camera is blocked, allow it via the symbol in your browser’s address bar and press “Try again”.',
    mediaInsecureTitle: 'Camera and microphone not available',
    mediaInsecureText: 'This page needs a secure connection (https) to use camera and microphone. You can still listen and watch.',
    mediaRetry: 'Try again',
    mediaDismiss: 'Hide this note',
  },

  de: {
    appName: 'Videobesprechung',
    language: 'Sprache',
    skipToContent: 'Zum Hauptinhalt springen',
    dismiss: 'Meldung schließen',
    cancel: 'Abbrechen',

    formTitle: 'An einer Besprechung teilnehmen',
    formTitleRoom: 'An der Besprechung „{room}“ teilnehmen',
    formIntro: 'Bitte geben Sie Ihren Namen ein. Ihr Browser fragt danach, ob diese Seite Kamera und Mikrofon verwenden darf.',
    formRoom: 'Besprechungskennung',
    formName: 'Ihr Name',
    formNameHint: 'Dieser Name ist für die anderen Teilnehmenden sichtbar.',
    formPin: 'PIN (falls vorhanden)',
    formPinHint: 'Nur nötig, wenn Sie mit der Einladung eine PIN erhalten haben.',
    formJoin: 'Teilnehmen',
    formNameRequired: 'Bitte geben Sie Ihren Namen ein.',
    formRoomRequired: 'Bitte geben Sie die Besprechungskennung ein.',
    formPinWrong: 'Die PIN ist nicht korrekt. Bitte prüfen Sie sie und versuchen Sie es erneut.',
    formPinRequired: 'Für diese Besprechung ist eine PIN nötig. Bitte geben Sie sie ein.',

    connectingTitle: 'Verbindung wird hergestellt …',
    connectingText: 'Ihr Browser fragt eventuell, ob diese Seite Kamera und Mikrofon verwenden darf. Bitte erlauben Sie den Zugriff.',
    lobbyTitle: 'Warteraum',
    lobbyIntro: 'Willkommen bei „{room}“. Sie werden in Kürze eingelassen. Bitte lassen Sie diese Seite geöffnet.',
    lobbyPosition: 'Sie sind Nummer {position} in der Warteschlange.',
    lobbyWaitMinutes: 'Geschätzte Wartezeit: etwa {minutes} Minuten.',
    lobbyWaitOneMinute: 'Geschätzte Wartezeit: etwa 1 Minute.',
    lobbyWaitUnderMinute: 'Geschätzte Wartezeit: weniger als eine Minute.',
    lobbyNoHost: 'Es ist noch keine Moderation anwesend; Sie werden eingelassen, sobald jemand da ist.',
    lobbyLeave: 'Warteraum verlassen',

    lostTitle: 'Verbindung unterbrochen',
    lostCountdown: 'Neuer Verbindungsversuch in {seconds} s …',
    lostTrying: 'Verbindung wird wiederhergestellt …',
    reconnectNow: 'Jetzt neu verbinden',
    reconnected: 'Die Verbindung ist wiederhergestellt.',

    joinAgain: 'Erneut teilnehmen',
    changeRoom: 'Andere Besprechung wählen',
    ended_left: 'Sie haben die Besprechung verlassen',
    ended_left_text: 'Vielen Dank für Ihre Teilnahme.',
    ended_locked: 'Diese Besprechung ist gesperrt',
    ended_locked_text: 'Derzeit werden keine weiteren Personen eingelassen. Bitte versuchen Sie es später erneut.',
    ended_locked_out: 'Zu viele falsche PINs',
    ended_locked_out_text: 'Zu Ihrem Schutz ist die Teilnahme von dieser Verbindung aus für eine Weile gesperrt. Bitte versuchen Sie es später erneut oder fragen Sie die einladende Person nach der PIN.',
    ended_full: 'Diese Besprechung ist voll besetzt',
    ended_full_text: 'Die höchste Zahl an Teilnehmenden ist erreicht. Bitte versuchen Sie es später erneut.',
    ended_denied: 'Die Moderation hat Sie nicht eingelassen',
    ended_denied_text: 'Falls Sie das für einen Irrtum halten, wenden Sie sich bitte an die einladende Stelle.',
    ended_removed: 'Die Moderation hat Sie aus der Besprechung entfernt',
    ended_removed_text: 'Falls Sie das für einen Irrtum halten, wenden Sie sich bitte an die einladende Stelle.',
    ended_meeting_ended: 'Die Besprechung wurde beendet',
    ended_meeting_ended_text: 'Vielen Dank für Ihre Teilnahme.',
    ended_unknown_room: 'Besprechung nicht gefunden',
    ended_unknown_room_text: 'Bitte prüfen Sie den Link oder die Besprechungskennung.',
    ended_generic: 'Die Verbindung zur Besprechung wurde beendet',
    ended_generic_text: 'Grund: {reason}',

    participants: 'Teilnehmende',
    participantsCount: 'Teilnehmende ({count})',
    waitingCount: '{count} wartend',
    you: 'Sie',
    youSuffix: '(Sie)',
    noOthers: 'Außer Ihnen ist noch niemand da.',
    role_host: 'Moderation',
    role_guest: 'Gast',
    kind_browser: 'Browser',
    kind_phone: 'Telefon',
    kind_sip_room_system: 'Konferenzraumsystem (SIP)',
    kind_h323_room_system: 'Konferenzraumsystem (H.323)',
    statusMuted: 'Mikrofon aus',
    statusHostMuted: 'Von der Moderation stummgeschaltet',
    statusUnmuteForbidden: 'Darf Mikrofon nicht einschalten',
    statusHand: 'Hand gehoben',
    statusSpeaking: 'Spricht',
    statusVideoOff: 'Kamera aus',
    statusReconnecting: 'Verbindung unterbrochen, verbindet neu …',
    meetingLocked: 'Besprechung gesperrt',
    videoArea: 'Video',
    actionsFor: 'Aktionen für {name}',
    playAudio: 'Ton der Besprechung abspielen',
    audioBlocked: 'Ihr Browser hat den Ton der Besprechung nicht automatisch gestartet.',

    yourControls: 'Ihre Steuerung',
    micMute: 'Mikrofon stummschalten',
    micUnmute: 'Mikrofon einschalten',
    camOff: 'Kamera ausschalten',
    camOn: 'Kamera einschalten',
    handRaise: 'Hand heben',
    handLower: 'Hand senken',
    leave: 'Besprechung verlassen',
    showParticipants: 'Teilnehmende',
    noMicrophone: 'Es ist kein Mikrofon verfügbar.',
    noCamera: 'Es ist keine Kamera verfügbar.',

    hostControls: 'Moderationsfunktionen',
    muteAll: 'Alle Gäste stummschalten',
    muteAllForbid: 'und ihnen nicht erlauben, das Mikrofon selbst wieder einzuschalten',
    allowAllUnmute: 'Allen Gästen das Einschalten des Mikrofons erlauben',
    mutePolicyHint: 'Gäste sind stummgeschaltet, auch wer später hinzukommt. Sie dürfen ihr Mikrofon selbst einschalten.',
    mutePolicyForbidHint: 'Gäste sind stummgeschaltet, auch wer später hinzukommt, und dürfen ihr Mikrofon nicht selbst einschalten.',
    lock: 'Besprechung sperren',
    unlock: 'Besprechung entsperren',
    lockedHint: 'Die Besprechung ist gesperrt: Niemand kann mehr beitreten.',
    unlockedHint: 'Die Besprechung ist offen: Neue Teilnehmende können beitreten.',
    endMeeting: 'Besprechung für alle beenden',
    hostMute: '{name} stummschalten',
    hostUnmute: 'Stummschaltung von {name} aufheben',
    hostForbid: '{name} verbieten, das Mikrofon einzuschalten',
    hostAllow: '{name} erlauben, das Mikrofon einzuschalten',
    hostLowerHand: 'Hand von {name} senken',
    hostRemove: '{name} aus der Besprechung entfernen',
    lobbyAdmit: '{name} einlassen',
    lobbyDeny: '{name} abweisen',
    lobbyPanel: 'Warteraum',
    lobbyEmpty: 'Niemand wartet.',
    lobbyEntryMeta: '{kind}, Nummer {position} in der Warteschlange',
    confirmRemoveTitle: '{name} entfernen?',
    confirmRemoveText: '{name} wird sofort von der Besprechung getrennt.',
    confirmRemove: 'Entfernen',
    confirmEndTitle: 'Besprechung für alle beenden?',
    confirmEndText: 'Alle Teilnehmenden und alle Personen im Warteraum werden getrennt.',
    confirmEnd: 'Besprechung beenden',

    notice_host_muted: 'Die Moderation hat Ihr Mikrofon stummgeschaltet.',
    notice_host_unmuted: 'Die Moderation hat die Stummschaltung Ihres Mikrofons aufgehoben.',
    notice_self_unmute_forbidden: 'Die Moderation hat Sie stummgeschaltet. Sie können Ihr Mikrofon wieder einschalten, sobald die Moderation es erlaubt.',
    notice_self_unmute_allowed: 'Die Moderation erlaubt Ihnen wieder, Ihr Mikrofon einzuschalten.',
    notice_hand_lowered: 'Die Moderation hat Ihre Hand gesenkt.',
    notice_removed_from_lobby: 'Sie wurden aus dem Warteraum entfernt.',
    notice_admitted: 'Sie wurden in die Besprechung eingelassen.',
    notice_room_locked: 'Die Besprechung wurde gesperrt.',
    notice_room_unlocked: 'Die Besprechung wurde entsperrt.',
    notice_host_muted_by: '{by} hat Ihr Mikrofon stummgeschaltet.',
    notice_host_unmuted_by: '{by} hat die Stummschaltung Ihres Mikrofons aufgehoben.',
    notice_self_unmute_forbidden_by: '{by} hat Sie stummgeschaltet. Sie können Ihr Mikrofon wieder einschalten, sobald die Moderation es erlaubt.',
    notice_self_unmute_allowed_by: '{by} erlaubt Ihnen wieder, Ihr Mikrofon einzuschalten.',
    notice_hand_lowered_by: '{by} hat Ihre Hand gesenkt.',
    notice_lobby_waiting: '{name} wartet im Warteraum.',
    notice_generic: 'Hinweis: {text}',
    handRaisedNotice: '{name} hat die Hand gehoben.',

    error_self_unmute_forbidden: 'Die Moderation hat Sie stummgeschaltet. Sie können Ihr Mikrofon wieder einschalten, sobald die Moderation es erlaubt.',
    error_not_allowed: 'Dazu sind Sie nicht berechtigt.',
    error_unknown_participant: 'Diese Person ist nicht mehr in der Besprechung.',
    error_bad_message: 'Die Anfrage konnte nicht verarbeitet werden ({message}).',
    error_full: 'Die Besprechung ist voll besetzt: Derzeit kann niemand mehr eingelassen werden.',
    error_generic: 'Es ist ein Fehler aufgetreten: {message}',
    error_webrtc: 'Die Audio- und Videoverbindung konnte nicht hergestellt werden.',

    mediaBlockedTitle: 'Kamera und Mikrofon sind blockiert',
    mediaBlockedText: 'Sie können trotzdem zuhören und zusehen. Um den Zugriff zu erlauben, klicken Sie in der Adressleiste Ihres Browsers auf das Kamera- oder Schloss-Symbol, erlauben Sie Kamera und Mikrofon und wählen Sie dann „Erneut versuchen“.',
    mediaNotFoundTitle: 'Keine Kamera und kein Mikrofon gefunden',
    mediaNotFoundText: 'Sie können trotzdem zuhören und zusehen. Schließen Sie ein Headset oder eine Kamera an und wählen Sie „Erneut versuchen“.',
    mediaFailedTitle: 'Kamera und Mikrofon konnten nicht gestartet werden',
    mediaFailedText: 'Möglicherweise werden sie von einem anderen Programm verwendet. Sie können trotzdem zuhören und zusehen. Schließen Sie das andere Programm und wählen Sie „Erneut versuchen“.',
    mediaNoCameraTitle: 'Kamera nicht verfügbar',
    mediaNoCameraText: 'Die anderen können Sie hören, aber nicht sehen. Falls die Kamera blockiert ist, erlauben Sie sie über das Symbol in der Adressleiste und wählen Sie „Erneut versuchen“.',
    mediaInsecureTitle: 'Kamera und Mikrofon nicht verfügbar',
    mediaInsecureText: 'Für Kamera und Mikrofon benötigt diese Seite eine sichere Verbindung (https). Sie können trotzdem zuhören und zusehen.',
    mediaRetry: 'Erneut versuchen',
    mediaDismiss: 'Hinweis ausblenden',
  },
};

export const LANGUAGES = { de: 'Deutsch', en: 'English' };
const STORAGE_KEY = 'gateway.lang';
let current = 'en';

/** The language to start with: a stored choice, else the browser's language (de* -> German). */
export function detectLang() {
  let stored = null;
  try { stored = localStorage.getItem(STORAGE_KEY); } catch { /* storage may be disabled */ }
  if (stored && STRINGS[stored]) return stored;
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  return String(langs[0] || 'en').toLowerCase().startsWith('de') ? 'de' : 'en';
}

export function getLang() {
  return current;
}

export function setLang(lang, remember = false) {
  current = STRINGS[lang] ? lang : 'en';
  document.documentElement.lang = current;
  if (remember) {
    try { localStorage.setItem(STORAGE_KEY, current); } catch { /* ignore */ }
  }
}

export function has(key) {
  return key in STRINGS[current] || key in STRINGS.en;
}

/** Translates `key`, filling {placeholders} from `params`. Unknown keys return the key itself. */
export function t(key, params = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** Fills static markup: data-i18n (text), data-i18n-label (aria-label), data-i18n-title. */
export function applyStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}
