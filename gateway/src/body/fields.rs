//! Turning a JSON value into a request type while naming every field that is missing or of
//! the wrong JSON type, by its JSON path (`lines[0].quantity`), instead of stopping at the
//! first one as serde does.
//!
//! [`deserialize`] drives the type's own `Deserialize` over a `Lenient` view of the value.
//! Where a value has the wrong JSON type, the view writes down the field and the type that was
//! wanted, and hands the visitor a stand-in (`Placeholder`: 0, `""`, `[]`, ...) so that the
//! walk goes on. A missing required field is only known to serde's derive, which stops at the
//! first one; so each (struct, field) it reports is remembered and the walk runs again with
//! that field stood in for wherever it is missing. That takes one more walk per required field
//! of the body's types, never one per occurrence. Fields with `#[serde(default)]` or of
//! `Option` type are never reported as missing: serde's derive does not ask for them.
//!
//! An unknown field (with `deny_unknown_fields`) is named and left out of the next walks, so
//! the others are still looked at. What the view cannot carry on from ends the walk: errors
//! of a value's own parsing (a malformed UUID, no variant of an untagged enum matching); they
//! are reported with their path too.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Display;

use orderflow_domain::FieldError;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde::Deserialize;
use serde_json::Value;

/// Why a JSON value is not a `T`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Fields unknown, missing or of the wrong type, each by its JSON path; never empty.
    #[error("{} field(s) unknown, missing or of the wrong type", .0.len())]
    Fields(Vec<FieldError>),
    /// The value as a whole is not of the type (not an object where one is wanted, ...).
    #[error("{0}")]
    Body(String),
}

/// What [`deserialize_partial`] made of a value: every field that is unknown, missing or of
/// the wrong JSON type, and the value with stand-ins for those when the walk got to its end.
#[derive(Debug)]
pub struct Partial<T> {
    /// The value, with stand-ins (0, `""`, `[]`, ...) where `errors` name a field; `None`
    /// when a value's own parsing stopped the walk.
    pub value: Option<T>,
    /// The fields in error, by JSON path; empty when `value` is the body as it was sent.
    pub errors: Vec<FieldError>,
}

/// Most walks over one value: one per required field of the body's types and per unknown
/// field, and the last.
const MAX_WALKS: usize = 256;

/// Deserializes `value` into `T`, naming every unknown, missing or mistyped field.
///
/// # Errors
/// A [`ShapeError`] with every field that is unknown, missing or of the wrong JSON type, or
/// the first error the walk cannot go on from.
pub fn deserialize<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, ShapeError> {
    match deserialize_partial(value)? {
        Partial {
            value: Some(parsed),
            errors,
        } if errors.is_empty() => Ok(parsed),
        Partial { errors, .. } => Err(fields_error(errors)),
    }
}

/// As [`deserialize`], keeping the value with stand-ins when only fields are in error, so that
/// the caller can check the values that did arrive and name every problem at once.
///
/// # Errors
/// [`ShapeError::Body`] when the value as a whole is not of the type, or has too many missing
/// or unknown fields to list.
pub fn deserialize_partial<'a, T: Deserialize<'a>>(
    value: &'a Value,
) -> Result<Partial<T>, ShapeError> {
    let mut required = HashSet::new();
    let mut unknown = HashSet::new();
    let mut unknown_errors = Vec::new();
    for _ in 0..MAX_WALKS {
        let walk = Walk {
            required: &required,
            unknown: &unknown,
            errors: RefCell::new(Vec::new()),
        };
        let result = T::deserialize(Lenient {
            value,
            path: String::new(),
            walk: &walk,
        });
        let mut errors = unknown_errors.clone();
        errors.extend(walk.errors.into_inner());
        match result {
            Ok(parsed) => {
                if let Some(whole) = errors.iter().find(|e| e.field.is_empty()) {
                    return Err(ShapeError::Body(format!("the body {}", whole.message)));
                }
                return Ok(Partial {
                    value: Some(parsed),
                    errors,
                });
            }
            Err(Stop::Missing { within, field }) if !required.contains(&(within, field)) => {
                required.insert((within, field));
            }
            Err(Stop::At {
                path,
                message,
                unknown_field: true,
            }) if !unknown.contains(&path) => {
                // Named, then left out of the next walks, which go on to the other fields.
                unknown_errors.push(FieldError::new(path.clone(), message));
                unknown.insert(path);
            }
            Err(Stop::At { path, message, .. }) => {
                // Where a stand-in was refused, the field is named already.
                if !errors.iter().any(|e| e.field == path) {
                    errors.push(FieldError::new(path, message));
                }
                if let Some(whole) = errors.iter().find(|e| e.field.is_empty()) {
                    return Err(ShapeError::Body(format!("the body {}", whole.message)));
                }
                return Ok(Partial {
                    value: None,
                    errors,
                });
            }
            Err(other) => return Err(ShapeError::Body(other.to_string())),
        }
    }
    Err(ShapeError::Body(
        "the body has too many missing or unknown fields to list".into(),
    ))
}

/// The body itself (path `""`) of the wrong type is not about a field.
fn fields_error(errors: Vec<FieldError>) -> ShapeError {
    match errors.iter().find(|e| e.field.is_empty()) {
        Some(whole) => ShapeError::Body(format!("the body {}", whole.message)),
        None => ShapeError::Fields(errors),
    }
}

/// What one walk shares: the fields known to be required, and the errors written down.
struct Walk<'w> {
    /// (struct name, field) pairs that serde's derive reported missing in an earlier walk.
    required: &'w HashSet<(&'static str, &'static str)>,
    /// JSON paths of members an earlier walk found unknown to their type: skipped.
    unknown: &'w HashSet<String>,
    errors: RefCell<Vec<FieldError>>,
}

impl Walk<'_> {
    fn record(&self, path: &str, message: String) {
        self.errors
            .borrow_mut()
            .push(FieldError::new(path, message));
    }
}

/// Why a walk stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// Raised by serde's derive for a required field; placed in its struct on the way out.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A required field of struct `within` is missing.
    #[error("missing field `{field}`")]
    Missing {
        within: &'static str,
        field: &'static str,
    },
    /// An error at `path` the walk cannot go on from.
    #[error("{path}: {message}")]
    At {
        path: String,
        message: String,
        unknown_field: bool,
    },
    /// An error not placed yet.
    #[error("{0}")]
    Custom(String),
}

impl de::Error for Stop {
    fn custom<T: Display>(message: T) -> Self {
        Stop::Custom(message.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Stop::MissingField(field)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What a JSON value is, for messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A view of a JSON value at `path` that writes down type mismatches instead of failing.
struct Lenient<'a, 'w> {
    value: &'a Value,
    path: String,
    walk: &'w Walk<'w>,
}

impl<'a, 'w> Lenient<'a, 'w> {
    fn at(&self, value: &'a Value, path: String) -> Self {
        Lenient {
            value,
            path,
            walk: self.walk,
        }
    }

    /// The same view again, to be consumed by a deserialization while this one stays.
    fn reborrow(&self) -> Self {
        self.at(self.value, self.path.clone())
    }

    /// Writes down that `wanted` was wanted here.
    fn mismatch(&self, wanted: &str) {
        self.walk.record(
            &self.path,
            format!("must be {wanted}, not {}", kind(self.value)),
        );
    }

    /// Places an error not placed yet at this path.
    fn place<T>(&self, result: Result<T, Stop>) -> Result<T, Stop> {
        result.map_err(|e| match e {
            Stop::Custom(message) => Stop::At {
                path: self.path.clone(),
                message,
                unknown_field: false,
            },
            other => other,
        })
    }

    /// serde_json's own deserializer, for shapes this view does not look into.
    fn plain<T>(&self, result: Result<T, serde_json::Error>) -> Result<T, Stop> {
        self.place(result.map_err(|e| Stop::Custom(e.to_string())))
    }
}

/// A number written with a fraction that is zero (`2.0`, `1e3`) as the integer it is: JSON
/// Schema's `integer`, which the OpenAPI document uses, is any number without a fractional
/// part, however it is written. `None` for other fractions and for what `i64` cannot hold.
fn integral(n: &serde_json::Number) -> Option<i64> {
    // -2^63 and 2^63 as f64 exactly: `i64::MAX as f64` rounds up to 2^63, which does not fit.
    const LOWEST: f64 = -9_223_372_036_854_775_808.0;
    const PAST_HIGHEST: f64 = 9_223_372_036_854_775_808.0;
    let f = n.as_f64()?;
    (f.fract() == 0.0 && (LOWEST..PAST_HIGHEST).contains(&f)).then_some(f as i64)
}

macro_rules! lenient_integers {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
            let fits = match self.value {
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|i| <$ty>::try_from(i).ok())
                    .or_else(|| n.as_u64().and_then(|u| <$ty>::try_from(u).ok()))
                    .or_else(|| integral(n).and_then(|i| <$ty>::try_from(i).ok())),
                _ => None,
            };
            match fits {
                Some(n) => self.place(visitor.$visit(n)),
                None => {
                    let wanted = if stringify!($ty) == "i64" {
                        "an integer".to_string()
                    } else {
                        format!("an integer from {} to {}", <$ty>::MIN, <$ty>::MAX)
                    };
                    self.mismatch(&wanted);
                    self.place(Placeholder.$method(visitor))
                }
            }
        }
    )*};
}

impl<'a> Deserializer<'a> for Lenient<'a, '_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        // An untagged enum's integer variant asks for any value: `2.0` is the integer 2 here too.
        if let Value::Number(n) = self.value {
            if let Some(i) = n.is_f64().then(|| integral(n)).flatten() {
                return self.place(visitor.visit_i64(i));
            }
        }
        let result = self.value.deserialize_any(visitor);
        self.plain(result)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value {
            Value::Bool(b) => self.place(visitor.visit_bool(*b)),
            _ => {
                self.mismatch("a boolean");
                self.place(Placeholder.deserialize_bool(visitor))
            }
        }
    }

    lenient_integers! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_i128 visit_i128 i128;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value.as_f64() {
            Some(n) => self.place(visitor.visit_f64(n)),
            None => {
                self.mismatch("a number");
                self.place(Placeholder.deserialize_f64(visitor))
            }
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        let mut chars = self.value.as_str().map(str::chars);
        match chars.as_mut().map(|c| (c.next(), c.next())) {
            Some((Some(c), None)) => self.place(visitor.visit_char(c)),
            _ => {
                self.mismatch("a string of one character");
                self.place(Placeholder.deserialize_char(visitor))
            }
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value {
            Value::String(s) => self.place(visitor.visit_borrowed_str(s)),
            _ => {
                self.mismatch("a string");
                self.place(Placeholder.deserialize_str(visitor))
            }
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        let result = self.value.deserialize_bytes(visitor);
        self.plain(result)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value {
            Value::Null => self.place(visitor.visit_none()),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value {
            Value::Null => self.place(visitor.visit_unit()),
            _ => {
                self.mismatch("null");
                self.place(Placeholder.deserialize_unit(visitor))
            }
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value {
            Value::Array(items) => {
                let access = Items {
                    items: items.iter().enumerate(),
                    parent: &self,
                };
                let result = visitor.visit_seq(access);
                self.place(result)
            }
            _ => {
                self.mismatch("an array");
                self.place(Placeholder.deserialize_seq(visitor))
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.value {
            Value::Object(members) => {
                let access = Members {
                    members: members.iter(),
                    absent: Vec::new().into_iter(),
                    next: None,
                    parent: &self,
                };
                let result = visitor.visit_map(access);
                self.place(result)
            }
            _ => {
                self.mismatch("an object");
                self.place(Placeholder.deserialize_map(visitor))
            }
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.value {
            Value::Object(members) => {
                let absent: Vec<&'static str> = fields
                    .iter()
                    .copied()
                    .filter(|f| {
                        !members.contains_key(*f) && self.walk.required.contains(&(name, *f))
                    })
                    .collect();
                let access = Members {
                    members: members.iter(),
                    absent: absent.into_iter(),
                    next: None,
                    parent: &self,
                };
                match visitor.visit_map(access) {
                    Err(Stop::MissingField(field)) => Err(Stop::Missing {
                        within: name,
                        field,
                    }),
                    other => self.place(other),
                }
            }
            _ => {
                self.mismatch("an object");
                self.place(Placeholder.deserialize_struct(name, fields, visitor))
            }
        }
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.value {
            Value::String(s) => {
                let access = BorrowedStrDeserializer::<Stop>::new(s);
                self.place(visitor.visit_enum(access))
            }
            Value::Object(_) => {
                let result = self.value.deserialize_enum(name, variants, visitor);
                self.plain(result)
            }
            _ => {
                self.mismatch("a string");
                self.place(Placeholder.deserialize_enum(name, variants, visitor))
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }
}

/// The items of an array, each viewed at `path[i]`.
struct Items<'p, 'a, 'w> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    parent: &'p Lenient<'a, 'w>,
}

impl<'a> SeqAccess<'a> for Items<'_, 'a, '_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.items.next() {
            Some((i, item)) => {
                let item = self.parent.at(item, format!("{}[{i}]", self.parent.path));
                // Errors a type raises after reading its value (an untagged enum that
                // matched no variant) belong to the item too.
                let result = seed.deserialize(item.reborrow());
                item.place(result).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The members of an object, each viewed at `path.key`, then the required fields it lacks.
struct Members<'p, 'a, 'w> {
    members: serde_json::map::Iter<'a>,
    absent: std::vec::IntoIter<&'static str>,
    /// The member whose key was handed out last (`None` as value: an absent field).
    next: Option<(&'a str, Option<&'a Value>)>,
    parent: &'p Lenient<'a, 'w>,
}

impl<'a> MapAccess<'a> for Members<'_, 'a, '_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        let unknown = self.parent.walk.unknown;
        let parent = &self.parent.path;
        if let Some((key, value)) = self
            .members
            .find(|(key, _)| !unknown.contains(&join(parent, key)))
        {
            self.next = Some((key.as_str(), Some(value)));
            let key_de = BorrowedStrDeserializer::<Stop>::new(key);
            return seed.deserialize(key_de).map(Some).map_err(|e| match e {
                Stop::Custom(message) => Stop::At {
                    path: join(&self.parent.path, key),
                    message,
                    unknown_field: true,
                },
                other => other,
            });
        }
        match self.absent.next() {
            Some(field) => {
                self.next = Some((field, None));
                seed.deserialize(BorrowedStrDeserializer::<Stop>::new(field))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<T::Value, Stop> {
        let (key, value) = self
            .next
            .take()
            .ok_or_else(|| Stop::Custom("a value was asked for before its key".into()))?;
        let path = join(&self.parent.path, key);
        match value {
            Some(value) => {
                let member = self.parent.at(value, path);
                // Errors a type raises after reading its value (an untagged enum that
                // matched no variant) belong to the member too.
                let result = seed.deserialize(member.reborrow());
                member.place(result)
            }
            None => {
                let result = seed.deserialize(Absent {
                    path: path.clone(),
                    walk: self.parent.walk,
                });
                self.parent.at(&Value::Null, path).place(result)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len() + self.absent.len())
    }
}

/// A required field that is missing: written down as such, then stood in for.
struct Absent<'w> {
    path: String,
    walk: &'w Walk<'w>,
}

impl Absent<'_> {
    fn missing(&self) -> Placeholder {
        self.walk.record(&self.path, "is required".into());
        Placeholder
    }
}

macro_rules! absent_forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
            self.missing().$method(visitor)
        }
    )*};
}

impl<'a> Deserializer<'a> for Absent<'_> {
    type Error = Stop;

    absent_forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier
        deserialize_ignored_any
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_none()
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.missing().deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.missing().deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        self.missing().deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.missing().deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.missing().deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.missing().deserialize_enum(name, variants, visitor)
    }
}

/// A stand-in value of whatever type is asked for (0, `""`, `[]`, a struct of stand-ins,
/// the first variant), so that the walk can go on past a field already written down.
struct Placeholder;

macro_rules! placeholder_numbers {
    ($($method:ident $visit:ident $zero:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            visitor.$visit($zero)
        }
    )*};
}

impl<'de> Deserializer<'de> for Placeholder {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    placeholder_numbers! {
        deserialize_bool visit_bool false;
        deserialize_i8 visit_i8 0;
        deserialize_i16 visit_i16 0;
        deserialize_i32 visit_i32 0;
        deserialize_i64 visit_i64 0;
        deserialize_i128 visit_i128 0;
        deserialize_u8 visit_u8 0;
        deserialize_u16 visit_u16 0;
        deserialize_u32 visit_u32 0;
        deserialize_u64 visit_u64 0;
        deserialize_u128 visit_u128 0;
        deserialize_f32 visit_f32 0.0;
        deserialize_f64 visit_f64 0.0;
        deserialize_char visit_char ' ';
        deserialize_str visit_borrowed_str "";
        deserialize_string visit_borrowed_str "";
        deserialize_identifier visit_borrowed_str "";
        deserialize_bytes visit_borrowed_bytes &[];
        deserialize_byte_buf visit_borrowed_bytes &[];
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Stand(0))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Stand(len))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_seq(Stand(len))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_map(StandFields { fields: [].iter() })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_map(StandFields {
            fields: fields.iter(),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match variants.first() {
            Some(variant) => visitor.visit_enum(StandVariant(variant)),
            None => Err(Stop::Custom("an enum without variants".into())),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }
}

/// `len` stand-in items.
struct Stand(usize);

impl<'de> SeqAccess<'de> for Stand {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        if self.0 == 0 {
            return Ok(None);
        }
        self.0 -= 1;
        seed.deserialize(Placeholder).map(Some)
    }
}

/// Every field of a struct, each a stand-in.
struct StandFields {
    fields: std::slice::Iter<'static, &'static str>,
}

impl<'de> MapAccess<'de> for StandFields {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.fields.next() {
            Some(field) => seed
                .deserialize(BorrowedStrDeserializer::<Stop>::new(field))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(Placeholder)
    }
}

/// The first variant of an enum, with stand-in contents.
struct StandVariant(&'static str);

impl<'de> EnumAccess<'de> for StandVariant {
    type Error = Stop;
    type Variant = Placeholder;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Placeholder), Stop> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Stop>::new(self.0))?;
        Ok((variant, Placeholder))
    }
}

impl<'de> VariantAccess<'de> for Placeholder {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(Placeholder)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Stand(len))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_map(StandFields {
            fields: fields.iter(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        count: u32,
        #[serde(default)]
        flag: bool,
        note: Option<String>,
        items: Vec<Inner>,
        inner: Inner,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        id: i64,
        label: String,
    }

    fn fields(error: ShapeError) -> Vec<(String, String)> {
        match error {
            ShapeError::Fields(errors) => {
                let mut all: Vec<_> = errors.into_iter().map(|e| (e.field, e.message)).collect();
                all.sort();
                all
            }
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_good_value_parses() {
        let value = json!({"name": "a", "count": 2, "items": [{"id": 1, "label": "x"}],
                           "inner": {"id": 2, "label": "y"}});
        let parsed: Outer = deserialize(&value).unwrap();
        assert_eq!(parsed.count, 2);
        assert!(!parsed.flag);
        assert_eq!(parsed.note, None);
        assert_eq!(parsed.items[0].label, "x");
    }

    #[test]
    fn every_missing_required_field_is_named_and_optional_ones_are_not() {
        let value = json!({"items": [{"id": 1}, {"label": "x"}]});
        let error = deserialize::<Outer>(&value).unwrap_err();
        let required = |f: &str| (f.to_string(), "is required".to_string());
        assert_eq!(
            fields(error),
            [
                required("count"),
                required("inner"),
                required("items[0].label"),
                required("items[1].id"),
                required("name"),
            ]
        );
    }

    #[test]
    fn wrong_types_name_the_path_and_the_type_wanted() {
        let value = json!({"name": 5, "count": -1, "flag": "yes", "note": 3,
                           "items": [{"id": "one", "label": "x"}], "inner": []});
        let error = deserialize::<Outer>(&value).unwrap_err();
        assert_eq!(
            fields(error),
            [
                (
                    "count".into(),
                    "must be an integer from 0 to 4294967295, not the number -1".into()
                ),
                ("flag".into(), "must be a boolean, not a string".into()),
                ("inner".into(), "must be an object, not an array".into()),
                (
                    "items[0].id".into(),
                    "must be an integer, not a string".into()
                ),
                ("name".into(), "must be a string, not the number 5".into()),
                ("note".into(), "must be a string, not the number 3".into()),
            ]
        );
    }

    #[test]
    fn integers_written_with_a_zero_fraction_are_integers() {
        let value = json!({"id": 2.0, "label": "x"});
        assert_eq!(deserialize::<Inner>(&value).unwrap().id, 2);
        let value = json!({"name": "a", "count": 1e3, "items": [],
                           "inner": {"id": -4.0, "label": "y"}});
        let parsed: Outer = deserialize(&value).unwrap();
        assert_eq!((parsed.count, parsed.inner.id), (1000, -4));
        for bad in [json!(2.5), json!(1e19), json!(-1.0)] {
            let value = json!({"name": "a", "count": bad, "items": [],
                               "inner": {"id": 1, "label": "y"}});
            assert_eq!(
                fields(deserialize::<Outer>(&value).unwrap_err())[0].0,
                "count"
            );
        }
    }

    #[test]
    fn unknown_fields_are_named_with_their_path_beside_the_other_errors() {
        let value = json!({"name": "a", "count": "two", "items": [], "size": 1,
                           "inner": {"id": 2, "label": "y", "colour": "red"}});
        let named = fields(deserialize::<Outer>(&value).unwrap_err());
        let paths: Vec<&str> = named.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["count", "inner.colour", "size"], "{named:?}");
        assert!(named[1].1.contains("colour"), "{named:?}");
    }

    #[test]
    fn a_body_of_the_wrong_type_is_not_about_a_field() {
        for value in [json!([1]), json!("x"), json!(null)] {
            match deserialize::<Outer>(&value).unwrap_err() {
                ShapeError::Body(message) => {
                    assert!(message.contains("must be an object"), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn untagged_enums_are_named_when_missing_or_matching_no_variant() {
        #[derive(Debug, Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Bound {
            Position(i64),
            Time(String),
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Range {
            from: Bound,
        }
        let missing = deserialize::<Range>(&json!({})).unwrap_err();
        assert_eq!(fields(missing), [("from".into(), "is required".into())]);
        let wrong = deserialize::<Range>(&json!({"from": true})).unwrap_err();
        assert_eq!(fields(wrong)[0].0, "from");
        let integral = deserialize::<Range>(&json!({"from": 7.0})).unwrap();
        assert!(matches!(integral.from, Bound::Position(7)), "{integral:?}");
    }

    #[test]
    fn values_that_refuse_themselves_are_named() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct WithId {
            id: uuid::Uuid,
            count: i64,
        }
        let error = deserialize::<WithId>(&json!({"id": "nope", "count": "x"})).unwrap_err();
        let named: Vec<String> = fields(error).into_iter().map(|(f, _)| f).collect();
        assert!(named.contains(&"id".to_string()), "{named:?}");
    }
}
